// Package client serves canal.js, Canal's browser client: one ES module, no build
// step, no dependency, embedded in the Go binary.
//
//	<script type="module">
//	  import {connect} from "/canal.js";
//	  const canal = connect("/ws/feed/", {
//	    getTicket: async () => (await (await fetch("/realtime/ticket/", {method: "POST",
//	      headers: {"X-CSRFToken": csrftoken}})).json()).ticket,
//	  });
//	  canal.addEventListener("message", (e) => show(e.detail));
//	  canal.addEventListener("recover", (e) => { if (!e.detail.recovered) location.reload(); });
//	  canal.send({text: "hello"});
//	</script>
//
// What it does for the page: it reconnects by itself, with exponential backoff and
// full jitter so that thousands of clients dropped at once (a deploy) come back
// spread out; it calls getTicket before every attempt, since a ticket serves once;
// it sends the positions of the groups the consumer recovers (consumer.Options.Recover)
// and keeps them up to date from each frame, so a reconnect, to any process, brings
// what was missed without a gap or a duplicate, or a "recover" event with recovered
// false when the history no longer reaches back; it queues sends while offline
// (bounded); it answers the server's re-authorization requests (consumer.Options.MaxAge)
// with a fresh ticket; and when WebSockets are blocked it falls back to Server-Sent
// Events (server.Options.EventStreams), sending by HTTP POST to a URL of the page's
// choosing. The module's JSDoc documents the options and events.
//
// Handler serves it over net/http; on Fiber, mount Source (see the examples). The
// file is public code: Handler allows any origin to import it, so a Django page on
// another origin can load it from the Canal server.
package client
