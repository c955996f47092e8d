// Package canaltest provides helpers for testing Canal applications over real loopback
// sockets:
//
//   - NewServer runs a handler on a Fiber app on a private port; Dial returns a
//     Communicator, Channels' WebsocketCommunicator over a real socket (handshake
//     status, subprotocol, text/JSON frames, close codes, timeouts).
//   - StartRedis starts a private redis-server (Kill and Restart it for fault tests);
//     StartRedisCluster a local cluster of masters; StartRedisSentinel a master, a
//     replica and a sentinel, with Failover.
//   - StartDjango serves a Django project with runserver (DjangoCommand runs its
//     management commands); StartDjangoTests serves django_canal's own test project
//     (python/tests) with users and a credential of every kind, for auth.Django.
//   - Package browser drives Debian's headless Chromium for page-level tests.
//
// Every process a helper starts is stopped when the test ends, every wait is bounded,
// and everything listens on 127.0.0.1 only. A missing binary fails the test with the
// Debian package to install; nothing is skipped.
package canaltest
