package presence_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/canaltest"
	"github.com/canal-rt/canal/presence"
)

// BenchmarkRedisPresence10k reads a group of 10,000 connections (5,000 users with
// two each, one claim) spread over two processes: one HGETALL of 15,000 fields, one
// EXISTS, JSON decoding and aggregation.
//
//	go test -run '^$' -bench RedisPresence10k -benchtime 20x ./presence/
func BenchmarkRedisPresence10k(b *testing.B) {
	srv := canaltest.StartRedis(b)
	ctx := context.Background()
	opts := presence.RedisOptions{Options: presence.Options{Claims: []string{"avatar"}}}
	var stores [2]*presence.Redis
	for i := range stores {
		s, err := presence.NewRedis(ctx, srv.Client(b), opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		stores[i] = s
	}
	for i := range 10_000 {
		u := canal.User{ID: fmt.Sprint(i / 2), Username: fmt.Sprintf("user%d", i/2), Attrs: map[string]any{"avatar": "a.png"}}
		if _, err := stores[i%2].Join(ctx, "big", fmt.Sprintf("specific.x!%d", i), u); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		es, err := stores[0].Presence(ctx, "big")
		if err != nil || len(es) != 5000 || es[0].Connections != 2 {
			b.Fatalf("%d entries, %v", len(es), err)
		}
	}
}

// BenchmarkRedisJoinLeave is one Join and one Leave in a group of 10,000: constant
// work whatever the group's size.
func BenchmarkRedisJoinLeave(b *testing.B) {
	srv := canaltest.StartRedis(b)
	ctx := context.Background()
	s, err := presence.NewRedis(ctx, srv.Client(b), presence.RedisOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close(context.Background()) })
	for i := range 10_000 {
		if _, err := s.Join(ctx, "big", fmt.Sprintf("c%d", i), canal.User{ID: fmt.Sprint(i), Username: "u"}); err != nil {
			b.Fatal(err)
		}
	}
	u := canal.User{ID: "new", Username: "n"}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Join(ctx, "big", "me", u); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Leave(ctx, "big", "me", u); err != nil {
			b.Fatal(err)
		}
	}
}
