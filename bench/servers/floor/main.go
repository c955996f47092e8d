// Command floor is W1's floor: the least any Go server can do per handshake on this
// machine, to tell what a server's handshake costs beyond the system calls every Go
// server pays. It is not a server anyone should run.
//
// Per connection it accepts (Go's net: accept4, getsockname, TCP_NODELAY, epoll
// registration), reads the request until its blank line, answers 101 and the greeting
// frame {"type":"hello",…} in one write, reads until the client's reset and closes. No
// ticket, no Redis, no group, no HTTP library, no timeouts: every figure a real server
// adds is cost above this one. W1 only (bench/run.sh --servers …,floor --workloads w1).
//
//	floor -addr 127.0.0.1:8000
package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"flag"
	"log"
	"net"
)

const (
	wsGUID  = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	maxHead = 4 << 10
	hello   = `{"type":"hello","user":"floor"}`
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8000", "listen address")
	// Accepted for bench/run.sh's common command line; unused.
	flag.String("redis", "", "unused")
	flag.String("ping", "", "unused")
	flag.Parse()
	ln, err := net.Listen("tcp4", *addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c)
	}
}

var keyHeader = []byte("\r\nsec-websocket-key:")

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, maxHead)
	n := 0
	for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		if n == len(buf) {
			return
		}
		m, err := c.Read(buf[n:])
		if err != nil {
			return
		}
		n += m
	}
	key, ok := wsKey(buf[:n])
	if !ok {
		return
	}
	h := sha1.New()
	h.Write(key)
	h.Write([]byte(wsGUID))
	out := make([]byte, 0, 192)
	out = append(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	out = base64.StdEncoding.AppendEncode(out, h.Sum(nil))
	out = append(out, "\r\n\r\n"...)
	out = append(out, 0x81, byte(len(hello))) // FIN + text, unmasked, < 126 bytes
	out = append(out, hello...)
	if _, err := c.Write(out); err != nil {
		return
	}
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// wsKey finds the Sec-WebSocket-Key header's value (names are case-insensitive).
func wsKey(head []byte) ([]byte, bool) {
	i := bytes.Index(bytes.ToLower(head), keyHeader)
	if i < 0 {
		return nil, false
	}
	v := head[i+len(keyHeader):]
	end := bytes.IndexByte(v, '\r')
	if end < 0 {
		return nil, false
	}
	return bytes.TrimSpace(v[:end]), true
}
