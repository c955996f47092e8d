// Package canaltest provides helpers for testing Canal applications over real loopback
// sockets: a WebSocket communicator (like Channels' WebsocketCommunicator) and private
// redis-server instances.
package canaltest
