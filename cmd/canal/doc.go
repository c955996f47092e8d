// Command canal is a ready Canal server: realtime for a Django site, configured in a
// TOML file, with no Go to write.
//
//	go install github.com/canal-rt/canal/cmd/canal@latest
//	canal check -config canal.toml   # exit 0 if valid; 1 with every problem as file:line: key: what
//	canal serve -config canal.toml   # until SIGTERM or SIGINT, then a graceful drain
//	canal --version
//
// The configuration file is -config, else $CANAL_CONFIG, else ./canal.toml. Exit
// codes: 0 success, 1 invalid configuration or a failed server, 2 bad usage.
//
// # A minimal configuration
//
//	[redis]
//	url = "redis://127.0.0.1:6379/0"   # or CANAL_REDIS_URL
//
//	[auth.ticket]                      # django_canal's /ticket/
//
//	[[route]]
//	path = "ws/chat/<slug:room>/"
//	groups = ["chat_{room}", "user_{user.id}"]
//	events = ["chat.message"]          # group_send types sent to the socket as JSON
//
// Django then reaches the sockets with Channels' own code:
//
//	async_to_sync(get_channel_layer().group_send)("chat_lobby", {"type": "chat.message", "message": "hi"})
//
// and the browser receives {"message": "hi", "type": "chat.message"}.
//
// # Reference
//
// Top level:
//
//	listen            "127.0.0.1:8001"   socket listener (CANAL_LISTEN)
//	origins           []                 other origins whose pages may connect (server.Options.Origins;
//	                                     CANAL_ORIGINS); the request's own host is always allowed
//	shutdown_timeout  "25s"              how long SIGTERM waits for sockets to close
//
// [server]: max_connections (default: the file limit minus 512), handshake_timeout
// ("10s"), read_limit (65536 bytes), session_workers (256), ping_interval ("25s"),
// socket_send_buffer (65536 bytes of kernel send buffer per socket, at most 64 MiB; -1
// leaves the kernel's autotuning), event_streams (false: also serve Server-Sent Events
// on the same routes), client_js (true: serve canal.js, see below).
//
// Durations are text with a unit ("600s", "10m"); a bare number is an error, since
// Django writes seconds where canal would read nanoseconds.
//
// [log]: level = debug | info (default) | warn | error (CANAL_LOG_LEVEL); format = text
// (default) | json (CANAL_LOG_FORMAT). Logs go to standard error through log/slog.
// Tickets, cookies, tokens, query strings, passwords in Redis URLs and the content of
// messages never appear in them.
//
// [admin]: listen = "127.0.0.1:9091" (CANAL_ADMIN_LISTEN) serves GET /metrics
// (Prometheus: package metrics' canal_* series, per route pattern, and Go's runtime),
// GET /healthz (200 while the process runs) and GET /readyz (200 while every Redis
// answers PING and every bus is subscribed; 503 with the failed checks' names, and
// from the first moment of a drain). Off when empty; keep it off public networks.
//
// [redis]: url, the Redis of tickets, bus inputs and, by default, the layer
// (CANAL_REDIS_URL; redis://[:password@]host:port/db, rediss:// or unix://).
//
// [layer], the channel layer Django shares (its CHANNEL_LAYERS["default"]):
//
//	backend   "redis" when redis.url is set, else "memory"; "redis" is channels_redis'
//	          RedisChannelLayer, "pubsub" its RedisPubSubChannelLayer
//	hosts     [redis.url]
//	prefix    "asgi"
//	capacity  100
//	receive_buffer  16777216 bytes (backend redis): how much of a burst this process
//	          takes from its Redis queue ahead of routing (layers.RedisOptions.ReceiveBuffer,
//	          at most 1 GiB)
//
// symmetric_encryption_keys come from CANAL_LAYER_SYMMETRIC_ENCRYPTION_KEYS
// (comma-separated), never from the file.
//
// [[layer.history]], groups that keep a history (layers.HistoryRule; the first
// matching rule wins), for routes that recover them. Backends redis and memory keep
// history; pubsub cannot (canal check says so). Django's REALTIME_HISTORY lists the
// same rules, its ttl in seconds:
//
//	group  "feed_*"   required: a path.Match glob of group names
//	size   100        messages kept per group, 0 (the default, 100) to 100000
//	ttl    "5m"       how old a kept message may be; positive
//
// [auth.ticket] turns on django_canal's single-use tickets (in redis.url):
// transports = ["subprotocol", "query", "first_message"] (the default, all three),
// prefix = "canal:ticket:" (REALTIME_TICKET_PREFIX).
//
// [auth.session] turns on Django's session cookie, checked by django_canal's endpoint:
// url = "http://127.0.0.1:8000/session/" (required), cookie = "sessionid". The shared
// secret is CANAL_SESSION_TOKEN (Django's REALTIME_SESSION_TOKEN). The cookie reaches
// canal only when it serves on the site's host name (see docs/deploy.md).
//
// Token kinds travel as [auth.token] says (one setting for all of them):
// transports = ["subprotocol", "query", "first_message"] (default all three; query and
// subprotocol on anonymous routes), param = "token" (?token=T), subprotocol =
// "canal.token" (new WebSocket(url, ["canal.token", "canal.token." + T]), or
// "canal.token-b64." + base64url(T) for a token with ':' in it). The kinds:
//
//	[auth.jwt]     djangorestframework-simplejwt access tokens, checked in canal:
//	               algorithm ("HS256"), verifying_key (PEM, for RS/ES/EdDSA), audience,
//	               issuer, leeway, user_id_claim ("user_id"), username_claim, token_types
//	               (["access"]); the HS key is CANAL_JWT_SIGNING_KEY
//	[auth.signed]  django.core.signing tokens (signing.dumps({"user_id": ...}, salt=...)):
//	               salt, max_age (required), algorithm, user_id_key, username_key; the
//	               key is CANAL_SIGNING_KEY (SECRET_KEY), older ones
//	               CANAL_SIGNING_KEY_FALLBACKS
//	[auth.django]  kinds Django checks itself at django_canal's /auth/ (REALTIME_AUTH_KINDS):
//	               url = "http://127.0.0.1:8000/auth/", kinds = ["drf", "sesame"], cache
//	               ("0s": ask every time; at most 5m); secret CANAL_SESSION_TOKEN
//
// A route lists kinds by name (session, ticket, jwt, signed, or a Django kind); its
// token kinds are tried in turn for one credential. A route takes tickets or tokens,
// not both; by default it takes the session cookie, then the ticket if configured,
// else every token kind.
//
// [django]: timeout = "5s" for canal's calls to Django URLs (authorize, receive mode
// "django"). They carry "Authorization: Bearer $CANAL_DJANGO_TOKEN".
//
// [[bus]], a raw Redis Pub/Sub channel of JSON objects, as in the websockets guide's
// Django integration (connection.publish("events", json.dumps(event))):
//
//	channel  "events"                  required
//	group    "ct_{content_type_id}"    required: a template over the message's fields
//	redis    redis.url
//
// Each message goes, exactly as published (no decoding, no re-encoding), to this
// process's sockets in the group its fields name; every canal process subscribes, so
// each socket gets it once. Messages that are not a JSON object in UTF-8, over 1 MiB,
// or without the fields the template names are dropped and logged (at most a line a
// second per kind, without their content).
//
// [[route]], tried in order; no match answers 404 before any credential is read:
//
//	path        Django path() syntax: "ws/chat/<slug:room>/" (str, int, slug, uuid, path)
//	regex       or re_path() syntax: '^ws/jobs/(?P<job>[0-9]+)/$'
//	auth        credential kinds: ["session", "ticket"] (a live session is enough; else
//	            a ticket; a ticket present always wins), or token kinds (see above)
//	anonymous   false: refuse (403) who is not logged in; true admits visitors without
//	            credentials (such a route gets no ticket auth by default: a ticket is
//	            never optional)
//	require     predicates that must all hold, else 403: ["user.is_staff",
//	            'user.permissions contains "app.view_x"']
//	authorize   a Django URL asked before the socket opens, in the spirit of Centrifugo's
//	            subscribe proxy: POST {"user", "path", "route", "groups"}; 200/204 admits,
//	            401/403 refuses (403), anything else or no answer in time 503
//	groups      templates of the groups the socket joins: ["chat_{room}", "user_{user.id}",
//	            "ct_{user.content_types}"] (a list claim joins one group per item)
//	max_groups  256: more groups from the templates refuse the socket
//	events      layer message types sent to the socket, each as the message's JSON
//	            (built once per message for every member); canal.* and websocket.*
//	            types are built in and cannot be listed
//	recover     globs of the route's groups recovered for clients that come back with
//	            their positions (consumer.Options.Recover): ["feed_*"]; each must be
//	            covered by a [[layer.history]] rule (one whose group matches it as
//	            written: "feed_*" covers "feed_*" and "feed_news")
//
// An authorize view, in Django:
//
//	@csrf_exempt
//	@require_POST
//	def canal_authorize(request):
//	    expected = "Bearer " + os.environ["CANAL_DJANGO_TOKEN"]
//	    if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
//	        return HttpResponse(status=401)
//	    body = json.loads(request.body)
//	    member = Membership.objects.filter(user_id=body["user"]["id"], room=body["route"]["room"]).exists()
//	    return HttpResponse(status=204 if member else 403)
//
// A route value or claim a template names but the connection lacks refuses it (403),
// so a missing claim can never put users in a group shared by everyone it is missing
// for. Templates and predicates are the small language of package expr: names are
// user.id, user.username, user.authenticated, user.<claim>[.<key>], route.<name> or
// just <name>; predicates are NAME, not NAME, A == B, A != B, A contains B.
//
// Every authenticated socket also joins its user's group (consumer.UserGroup,
// "canal.user.<id>"), so django_canal.realtime reaches it: disconnect_user closes it,
// and refresh_user (sent by django_canal's REALTIME_USER_SIGNALS when a user's
// permissions or groups change) replaces its claims: canal checks require again
// (closing with 4403 a user who no longer passes) and joins and leaves groups to
// match the templates, without a reconnect. authorize is asked at the handshake only.
//
// Every route also relays {"type": "websocket.send", "text": "..."} (or "bytes")
// sent to a socket's channel as that frame, how a worker replies, and closes the
// socket on {"type": "websocket.close", "code": 4403} (Django closing a user's sockets
// at logout).
//
// [route.receive], what a client message does:
//
//	mode = "refuse"   (default) any client frame closes the socket with 1008
//	mode = "group"    the client's JSON object goes to group (a template) as a message
//	                  of type; "type" and "sender" ({"id", "username"}) are set by canal
//	mode = "worker"   the client's JSON object goes to channel (channel_layer.send shape)
//	                  as a message of type, with "reply_channel" (the socket's channel
//	                  name), "sender" and "route" added: a Channels SyncConsumer under
//	                  `manage.py runworker <channel>` handles it with the ORM and replies
//	                  with channel_layer.send(reply_channel, {"type": "websocket.send", ...})
//	mode = "django"   the client's JSON is posted to url as {"message", "user", "path",
//	                  "route", "channel_name"}; a non-empty 2xx answer is sent to the
//	                  socket as a text frame; 4xx closes with 4000+status, 5xx or no
//	                  answer in time with 1013
//
// A worker for mode "worker" (channel = "jobs", type = "job.submit"), run with
// `python manage.py runworker jobs` and ASGI_APPLICATION's
// ProtocolTypeRouter({"channel": ChannelNameRouter({"jobs": JobConsumer.as_asgi()})}):
//
//	class JobConsumer(SyncConsumer):
//	    def job_submit(self, message):         # the client's fields, plus sender, route, reply_channel
//	        result = do_the_work(message)      # the ORM is fine here
//	        async_to_sync(self.channel_layer.send)(message["reply_channel"],
//	            {"type": "websocket.send", "text": json.dumps(result)})
//
// In group and worker modes a frame that is not a JSON object closes the socket with
// 1007 (binary: 1003); a full worker channel or a layer that is down closes it with
// 1013, so a client never believes an undelivered message arrived.
//
// # Nothing lost across a reconnect
//
// A route's recovered groups give every message a position; a client that drops
// and comes back, to any canal process, with its last positions gets what it missed
// in order, then the live messages, with no gap and no duplicate; or, when the
// history no longer reaches back, a frame saying so. The wire is package consumer's
// (EventRecover): ?recover= in the handshake, the position spliced into each frame as
// its "canal" key (the layer's own __canal_pos__ key is not sent), and
// {"type": "canal.recover", "recovered": true|false, ...} after each catch-up.
//
//	[[layer.history]]
//	group = "feed_*"
//	size = 1000
//	ttl = "10m"
//
//	[[route]]
//	path = "ws/feed/<slug:feed>/"
//	groups = ["feed_{feed}"]
//	events = ["feed.item"]
//	recover = ["feed_*"]
//
// Django publishes with the position (a plain group_send cannot give one):
//
//	REALTIME_HISTORY = [{"group": "feed_*", "size": 1000, "ttl": 600}]   # settings.py
//	from django_canal.history import publish
//	publish("feed_news", {"type": "feed.item", "text": "hello"})
//
// Client messages a route relays (receive mode "group") to a group with history are
// published with positions too.
//
// canal.js, the browser client that keeps and sends the positions, reconnects with
// backoff and falls back to Server-Sent Events (package client), is served at
// GET /canal.js on the socket listener (no-cache with an ETag, any origin may import
// it), so a Django template needs no build step:
//
//	<script type="module">
//	  import {connect} from "https://rt.example.com/canal.js";
//	  const canal = connect("wss://rt.example.com/ws/feed/news/", {getTicket});
//	  canal.addEventListener("message", (e) => show(e.detail));
//	  canal.addEventListener("recover", (e) => { if (!e.detail.recovered) location.reload(); });
//	</script>
//
// [server] client_js = false turns it off (a site that serves the file itself).
//
// # Environment
//
//	CANAL_CONFIG, CANAL_LISTEN, CANAL_ORIGINS (comma-separated), CANAL_ADMIN_LISTEN,
//	CANAL_REDIS_URL, CANAL_LOG_LEVEL, CANAL_LOG_FORMAT   override the file
//	CANAL_SESSION_TOKEN, CANAL_DJANGO_TOKEN, CANAL_JWT_SIGNING_KEY, CANAL_SIGNING_KEY,
//	CANAL_SIGNING_KEY_FALLBACKS,
//	CANAL_LAYER_SYMMETRIC_ENCRYPTION_KEYS     secrets: only from the environment
//
// # Signals
//
// SIGTERM or SIGINT: /readyz turns 503, new handshakes get 503, open sockets close
// with 1001 after their groups are left, and the process exits 0 within
// shutdown_timeout (sockets still open then are dropped). See docs/deploy.md.
package main
