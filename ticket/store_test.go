package ticket_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/ticket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var ticketRE = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestNew(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		tk, err := ticket.New()
		if err != nil {
			t.Fatal(err)
		}
		if !ticketRE.MatchString(tk) {
			t.Fatalf("New() = %q, want 43 base64url characters", tk)
		}
		b, err := base64.RawURLEncoding.DecodeString(tk)
		if err != nil || len(b) != 32 {
			t.Fatalf("New() = %q decodes to %d bytes, %v; want 32", tk, len(b), err)
		}
		if seen[tk] {
			t.Fatalf("New() repeated %q", tk)
		}
		seen[tk] = true
	}
}

func TestHash(t *testing.T) {
	t.Parallel()
	// Computed with Python: hashlib.sha256(ticket.encode()).hexdigest().
	const tk = "q3Vh7-Y_0a1b2c3d4e5f6g7h8i9j0kLMNOPQRSTUVWX"
	const want = "cf2fa62aeaa7415750a029c70b1602bc95745379aec9df9a49a7b8042479f766"
	if got := ticket.Hash(tk); got != want {
		t.Fatalf("Hash(%q) = %s, want %s", tk, got, want)
	}
}

func TestWellFormed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"q3Vh7-Y_0a1b2c3d4e5f6g7h8i9j0kLMNOPQRSTUVWX", true},
		{"a", true},
		{strings.Repeat("a", ticket.MaxLen), true},
		{"", false},
		{strings.Repeat("a", ticket.MaxLen+1), false},
		{"abc=", false},  // padding
		{"ab+/", false},  // standard base64
		{"ab cd", false}, // space
		{"abc\n", false},
		{"abc\x00", false},
		{"abcé", false},
		{"abc%2F", false},
	}
	for _, tt := range tests {
		if got := ticket.WellFormed(tt.in); got != tt.want {
			t.Errorf("wellFormed(%.20q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want canal.User // zero: want ErrInvalid
	}{
		{"int id", `{"id": 42, "username": "alice"}`, canal.User{ID: "42", Username: "alice"}},
		{"2^53+1 id", `{"id": 9007199254740993, "username": "bob"}`, canal.User{ID: "9007199254740993", Username: "bob"}},
		{"huge id", `{"id": 123456789012345678901234567890, "username": "bob"}`, canal.User{ID: "123456789012345678901234567890", Username: "bob"}},
		{"negative id", `{"id": -3, "username": "bob"}`, canal.User{ID: "-3", Username: "bob"}},
		{"zero id", `{"id": 0, "username": "root"}`, canal.User{ID: "0", Username: "root"}},
		{"uuid id", `{"id": "550e8400-e29b-41d4-a716-446655440000", "username": "carol"}`,
			canal.User{ID: "550e8400-e29b-41d4-a716-446655440000", Username: "carol"}},
		{"string digits id", `{"id": "007", "username": "james"}`, canal.User{ID: "007", Username: "james"}},
		{"attrs", `{"id": 1, "username": "a", "is_staff": true, "groups": ["chat", "ops"], "level": 3, "email": null, "meta": {"k": 1.5}}`,
			canal.User{ID: "1", Username: "a", Attrs: map[string]any{
				"is_staff": true, "groups": []any{"chat", "ops"}, "level": json.Number("3"), "email": nil,
				"meta": map[string]any{"k": json.Number("1.5")},
			}}},
		{"compact and whitespace", " {\"username\":\"a\",\"id\":1}\n", canal.User{ID: "1", Username: "a"}},
		{"unicode username", `{"id": 1, "username": "Jos\u00e9"}`, canal.User{ID: "1", Username: "José"}},

		{"float id", `{"id": 42.0, "username": "a"}`, canal.User{}},
		{"exponent id", `{"id": 4.2e1, "username": "a"}`, canal.User{}},
		{"exponent int id", `{"id": 42e0, "username": "a"}`, canal.User{}},
		{"empty id", `{"id": "", "username": "a"}`, canal.User{}},
		{"null id", `{"id": null, "username": "a"}`, canal.User{}},
		{"bool id", `{"id": true, "username": "a"}`, canal.User{}},
		{"object id", `{"id": {}, "username": "a"}`, canal.User{}},
		{"missing id", `{"username": "a"}`, canal.User{}},
		{"missing username", `{"id": 1}`, canal.User{}},
		{"empty username", `{"id": 1, "username": ""}`, canal.User{}},
		{"number username", `{"id": 1, "username": 7}`, canal.User{}},
		{"null", `null`, canal.User{}},
		{"array", `[1, "a"]`, canal.User{}},
		{"string", `"alice"`, canal.User{}},
		{"empty", ``, canal.User{}},
		{"truncated", `{"id": 1, "username": "a"`, canal.User{}},
		{"trailing data", `{"id": 1, "username": "a"} x`, canal.User{}},
		{"second object", `{"id": 1, "username": "a"}{"id": 2, "username": "b"}`, canal.User{}},
		{"not json", `id=1`, canal.User{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ticket.Decode([]byte(tt.in))
			if tt.want.ID == "" {
				if !errors.Is(err, ticket.ErrInvalid) {
					t.Fatalf("Decode(%s) = %+v, %v; want ErrInvalid", tt.in, got, err)
				}
				if got.Authenticated() {
					t.Fatalf("Decode(%s) returned a user with its error: %+v", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode(%s) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		u    canal.User
		want string // "" when Encode must fail
	}{
		{canal.User{ID: "42", Username: "alice"}, `{"id":42,"username":"alice"}`},
		{canal.User{ID: "-7", Username: "a"}, `{"id":-7,"username":"a"}`},
		{canal.User{ID: "9007199254740993", Username: "a"}, `{"id":9007199254740993,"username":"a"}`},
		{canal.User{ID: "007", Username: "a"}, `{"id":"007","username":"a"}`},
		{canal.User{ID: "-0", Username: "a"}, `{"id":"-0","username":"a"}`},
		{canal.User{ID: "4.2", Username: "a"}, `{"id":"4.2","username":"a"}`},
		{canal.User{ID: "uuid-1", Username: "a", Attrs: map[string]any{"is_staff": true}}, `{"id":"uuid-1","is_staff":true,"username":"a"}`},
		{canal.User{ID: "1", Username: "a", Attrs: map[string]any{"id": 2}}, ""},
		{canal.User{ID: "1", Username: "a", Attrs: map[string]any{"username": "b"}}, ""},
		{canal.User{ID: "1", Username: "a", Attrs: map[string]any{"f": func() {}}}, ""},
		{canal.User{Username: "a"}, ""},
		{canal.User{ID: "1"}, ""},
	}
	for _, tt := range tests {
		b, err := ticket.Encode(tt.u)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Encode(%+v) = %s, want an error", tt.u, b)
			}
			continue
		}
		if err != nil || string(b) != tt.want {
			t.Errorf("Encode(%+v) = %s, %v; want %s", tt.u, b, err, tt.want)
			continue
		}
		u, err := ticket.Decode(b)
		if err != nil || u.ID != tt.u.ID || u.Username != tt.u.Username {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", tt.u, u, err)
		}
	}
}

// testStore runs the behaviour every Store must have. newStore returns a fresh store;
// subtests run in parallel on stores of their own.
func testStore(t *testing.T, newStore func(t *testing.T) ticket.Store) {
	ctx := t.Context()
	tests := []struct {
		name string
		run  func(t *testing.T, s ticket.Store)
	}{
		{"RoundTrip", func(t *testing.T, s ticket.Store) {
			tests := []struct {
				in, want canal.User
			}{
				{canal.User{ID: "42", Username: "alice"}, canal.User{ID: "42", Username: "alice"}},
				{canal.User{ID: "550e8400-e29b-41d4-a716-446655440000", Username: "bob"},
					canal.User{ID: "550e8400-e29b-41d4-a716-446655440000", Username: "bob"}},
				{canal.User{ID: "9007199254740993", Username: "big"}, canal.User{ID: "9007199254740993", Username: "big"}},
				{canal.User{ID: "007", Username: "james"}, canal.User{ID: "007", Username: "james"}},
				{canal.User{ID: "7", Username: "carol", Attrs: map[string]any{"is_staff": true, "groups": []string{"chat"}, "level": 3}},
					canal.User{ID: "7", Username: "carol", Attrs: map[string]any{"is_staff": true, "groups": []any{"chat"}, "level": json.Number("3")}}},
			}
			for _, tt := range tests {
				tk, err := s.Issue(ctx, tt.in, time.Minute)
				if err != nil {
					t.Fatalf("Issue(%+v): %v", tt.in, err)
				}
				if !ticketRE.MatchString(tk) {
					t.Fatalf("Issue returned %q, want 43 base64url characters", tk)
				}
				got, err := s.Consume(ctx, tk)
				if err != nil {
					t.Fatalf("Consume: %v", err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("Consume = %#v, want %#v", got, tt.want)
				}
			}
		}},
		{"DefaultTTL", func(t *testing.T, s ticket.Store) {
			tk, err := s.Issue(ctx, canal.User{ID: "1", Username: "a"}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Consume(ctx, tk); err != nil {
				t.Fatalf("Consume of a ticket issued with the default TTL: %v", err)
			}
		}},
		{"SingleUse", func(t *testing.T, s ticket.Store) {
			tk := issue(t, s, time.Minute)
			if _, err := s.Consume(ctx, tk); err != nil {
				t.Fatalf("first Consume: %v", err)
			}
			for range 2 {
				if u, err := s.Consume(ctx, tk); err != ticket.ErrInvalid {
					t.Fatalf("second Consume = %+v, %v; want ErrInvalid", u, err)
				}
			}
		}},
		{"Expired", func(t *testing.T, s ticket.Store) {
			tk := issue(t, s, 50*time.Millisecond)
			time.Sleep(150 * time.Millisecond)
			if u, err := s.Consume(ctx, tk); err != ticket.ErrInvalid {
				t.Fatalf("Consume after expiry = %+v, %v; want ErrInvalid", u, err)
			}
		}},
		{"Forged", func(t *testing.T, s ticket.Store) {
			tk := issue(t, s, time.Minute)
			forged, err := ticket.New()
			if err != nil {
				t.Fatal(err)
			}
			// One character off the real ticket.
			b := []byte(tk)
			b[10] ^= 'A' ^ 'B'
			if b[10] == tk[10] {
				b[10] = 'x'
			}
			for _, f := range []string{forged, string(b), tk[:42], tk + "A"} {
				if u, err := s.Consume(ctx, f); err != ticket.ErrInvalid {
					t.Fatalf("Consume(forged) = %+v, %v; want ErrInvalid", u, err)
				}
			}
			if _, err := s.Consume(ctx, tk); err != nil {
				t.Fatalf("the real ticket after forgeries: %v", err)
			}
		}},
		{"Malformed", func(t *testing.T, s ticket.Store) {
			for _, m := range malformed {
				u, err := s.Consume(ctx, m)
				if err != ticket.ErrInvalid {
					t.Fatalf("Consume(%.20q) = %+v, %v; want exactly ErrInvalid", m, u, err)
				}
			}
		}},
		{"Race", func(t *testing.T, s ticket.Store) {
			tk := issue(t, s, time.Minute)
			const n = 500
			var wins, invalid atomic.Int32
			var other atomic.Value
			start := make(chan struct{})
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					<-start
					u, err := s.Consume(ctx, tk)
					switch {
					case err == nil && u.ID == "1":
						wins.Add(1)
					case err == ticket.ErrInvalid:
						invalid.Add(1)
					default:
						other.Store(err)
					}
				})
			}
			close(start)
			wg.Wait()
			if wins.Load() != 1 || invalid.Load() != n-1 {
				t.Fatalf("%d goroutines racing: %d successes, %d ErrInvalid, other error: %v; want 1 and %d",
					n, wins.Load(), invalid.Load(), other.Load(), n-1)
			}
		}},
		{"CancelledContext", func(t *testing.T, s ticket.Store) {
			tk := issue(t, s, time.Minute)
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := s.Consume(cctx, tk); !errors.Is(err, context.Canceled) || errors.Is(err, ticket.ErrInvalid) {
				t.Fatalf("Consume with a cancelled context: %v; want context.Canceled", err)
			}
			if _, err := s.Issue(cctx, canal.User{ID: "1", Username: "a"}, time.Minute); !errors.Is(err, context.Canceled) {
				t.Fatalf("Issue with a cancelled context: %v; want context.Canceled", err)
			}
			// A cancelled caller consumed nothing.
			if _, err := s.Consume(ctx, tk); err != nil {
				t.Fatalf("Consume after a cancelled attempt: %v", err)
			}
		}},
		{"InvalidUser", func(t *testing.T, s ticket.Store) {
			for _, u := range []canal.User{{}, {ID: "1"}, {Username: "a"}, {ID: "1", Username: "a", Attrs: map[string]any{"id": 2}}} {
				if tk, err := s.Issue(ctx, u, time.Minute); err == nil {
					t.Fatalf("Issue(%+v) = %q, want an error", u, tk)
				}
			}
		}},
		{"ErrorsOmitTicket", func(t *testing.T, s ticket.Store) {
			tk := issue(t, s, time.Minute)
			s.Consume(ctx, tk)
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			for _, c := range []context.Context{ctx, cctx} {
				if _, err := s.Consume(c, tk); err == nil || strings.Contains(err.Error(), tk) {
					t.Fatalf("error %q reveals the ticket", err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

var malformed = []string{
	"",
	strings.Repeat("A", ticket.MaxLen+1),
	"q3Vh7-Y_0a1b2c3d4e5f6g7h8i9j0kLMNOPQRSTUV==",
	"q3Vh7+Y/0a1b2c3d4e5f6g7h8i9j0kLMNOPQRSTUVWX",
	"q3Vh7-Y_0a1b2c3d4e5f6g7h8i9j0kLMNOPQRSTUVW ",
	"q3Vh7-Y_0a1b2c3d4e5f6g7h8i9j0kLMNOPQRSTUVW\n",
	"*",
	"canal:ticket:cf2fa62aeaa7415750a029c70b1602bc95745379aec9df9a49a7b8042479f766",
	"\x00",
	"tické",
}

func issue(t testing.TB, s ticket.Store, ttl time.Duration) string {
	t.Helper()
	tk, err := s.Issue(t.Context(), canal.User{ID: "1", Username: "a"}, ttl)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tk
}
