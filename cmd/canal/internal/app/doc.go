// Package app is the canal command's server: it turns a checked configuration
// (package config) into a channel layer, credential middleware, one consumer per
// route and the bus subscriptions, serves them with package server, and shuts them
// down on cancellation.
//
// Each [[route]] is a consumer.Handler whose consumer is made of configuration: its
// Connect checks anonymous, require and authorize, expands the group templates and
// joins them; layer events of the listed types go out through consumer.Options.Frames
// (encoded once per message for every member); its ReceiveJSON applies the receive
// mode. Credential kinds are one wiring function each (auth.go), run in a fixed
// order around the route's consumer, inside the router, so an unknown path gets 404
// before any credential is read.
//
// The bus (bus.go) reads raw Redis Pub/Sub channels and hands each message, as its
// bytes, to this process's members of a group through localLayer, an index of the
// groups local sockets joined kept beside the shared layer: every canal process
// receives a bus message, so each must deliver it to its own sockets only.
//
// Bounds: the group index holds one entry per socket and group (max_groups per
// socket); a bus message is at most 1 MiB and names at most 256 groups; Django calls
// run on the server's session workers with a timeout, answers read up to 64 KiB.
package app
