package auth_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
)

// djangoVector was made by Django 3.2 itself, with SECRET_KEY = testSecret:
//
//	signing.dumps({"user_id": 42, "username": "alice", "is_staff": True}, salt="canal.ws")
//
// It pins the key derivation without Python; testdata/mint.py checks the rest live.
const djangoVector = "eyJ1c2VyX2lkIjo0MiwidXNlcm5hbWUiOiJhbGljZSIsImlzX3N0YWZmIjp0cnVlfQ:1xZY7M:c01fi1d9yT5f4Uuu8xnihTTKHtm2Nb7y2O0xmcwQEYY"

func mustSigned(t testing.TB, o auth.SignedOptions) auth.Verifier {
	t.Helper()
	v, err := auth.Signed(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignedDjangoVector(t *testing.T) {
	t.Parallel()
	v := mustSigned(t, auth.SignedOptions{Key: testSecret, Salt: "canal.ws", NoMaxAge: true})
	u, err := v(context.Background(), djangoVector)
	want := canal.User{ID: "42", Username: "alice", Attrs: map[string]any{"is_staff": true}}
	if err != nil || !reflect.DeepEqual(u, want) {
		t.Fatalf("got (%#v, %v); want %#v", u, err, want)
	}
	// The same token, aged: it was signed when this test was written.
	v = mustSigned(t, auth.SignedOptions{Key: testSecret, Salt: "canal.ws", MaxAge: time.Second})
	u, err = v(context.Background(), djangoVector)
	checkRefused(t, djangoVector, u, err)
}

var alice = map[string]any{"user_id": 42, "username": "alice", "is_staff": true, "groups": []string{"editors"}}

func TestSignedAccepts(t *testing.T) {
	t.Parallel()
	now := time.Now()
	base := auth.SignedOptions{Key: testSecret, Salt: "canal.ws", MaxAge: time.Minute}
	with := func(f func(o *auth.SignedOptions)) auth.SignedOptions {
		o := base
		f(&o)
		return o
	}
	aliceUser := canal.User{ID: "42", Username: "alice", Attrs: map[string]any{"is_staff": true, "groups": []any{"editors"}}}
	many := map[string]any{"user_id": "7", "groups": strings.Split(strings.Repeat("group,", 50), ",")}
	manyGroups := make([]any, 51)
	for i := range manyGroups {
		manyGroups[i] = "group"
	}
	manyGroups[50] = ""
	for _, c := range []struct {
		name  string
		opts  auth.SignedOptions // the verifier's; the token is signed with Key and Salt of base unless sign is set
		sign  *auth.SignedOptions
		token string
		want  canal.User
	}{
		{"dumps", base, nil, auth.DjangoDumps(base, alice, false, now), aliceUser},
		{"dumps compressed", base, nil, auth.DjangoDumps(base, many, true, now),
			canal.User{ID: "7", Attrs: map[string]any{"groups": manyGroups}}},
		{"dumps of an id", base, nil, auth.DjangoDumps(base, 42, false, now), canal.User{ID: "42"}},
		{"dumps of a string id", base, nil, auth.DjangoDumps(base, "3f1c2b9e", false, now), canal.User{ID: "3f1c2b9e"}},
		{"id key", base, nil, auth.DjangoDumps(base, map[string]any{"id": 5, "user_id": 6}, false, now),
			canal.User{ID: "6", Attrs: map[string]any{"id": json.Number("5")}}},
		{"custom keys", with(func(o *auth.SignedOptions) { o.UserIDKey, o.UsernameKey = "pk", "name" }), nil,
			auth.DjangoDumps(base, map[string]any{"pk": 5, "name": "bob", "user_id": 6}, false, now),
			canal.User{ID: "5", Username: "bob", Attrs: map[string]any{"user_id": json.Number("6")}}},
		{"almost MaxAge", base, nil, auth.DjangoDumps(base, alice, false, now.Add(-50*time.Second)), aliceUser},
		{"future timestamp", base, nil, auth.DjangoDumps(base, alice, false, now.Add(time.Hour)), aliceUser},
		{"TimestampSigner.sign", with(func(o *auth.SignedOptions) { o.Value = true }), nil,
			auth.DjangoSign(base, "42", now), canal.User{ID: "42"}},
		{"value with separator", with(func(o *auth.SignedOptions) { o.Value = true }), nil,
			auth.DjangoSign(base, "a:b", now), canal.User{ID: "a:b"}},
		{"Signer.sign", with(func(o *auth.SignedOptions) { o.Value, o.NoTimestamp, o.MaxAge, o.NoMaxAge = true, true, 0, true }), nil,
			auth.DjangoSign(auth.SignedOptions{Key: testSecret, Salt: "canal.ws", NoTimestamp: true, NoMaxAge: true}, "42", now), canal.User{ID: "42"}},
		{"fallback key", with(func(o *auth.SignedOptions) { o.Key, o.Fallbacks = "new key", []string{"older", testSecret} }), nil,
			auth.DjangoDumps(base, alice, false, now), aliceUser},
		{"sha1", with(func(o *auth.SignedOptions) { o.Algorithm = "sha1" }), nil,
			auth.DjangoDumps(with(func(o *auth.SignedOptions) { o.Algorithm = "sha1" }), alice, false, now), aliceUser},
		{"sha512 and sep", with(func(o *auth.SignedOptions) { o.Algorithm, o.Sep = "sha512", "~" }), nil,
			auth.DjangoDumps(with(func(o *auth.SignedOptions) { o.Algorithm, o.Sep = "sha512", "~" }), alice, false, now), aliceUser},
		{"latin-1 payload", base, nil, auth.DjangoSign(base, base64.RawURLEncoding.EncodeToString([]byte("{\"user_id\":1,\"username\":\"j\xe9r\xf4me\"}")), now),
			canal.User{ID: "1", Username: "jérôme"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := mustSigned(t, c.opts)(context.Background(), c.token)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(u, c.want) {
				t.Fatalf("got %#v\nwant %#v", u, c.want)
			}
		})
	}
}

func zlibOf(b []byte) []byte {
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write(b)
	w.Close()
	return z.Bytes()
}

func TestSignedRefuses(t *testing.T) {
	t.Parallel()
	now := time.Now()
	base := auth.SignedOptions{Key: testSecret, Salt: "canal.ws", MaxAge: time.Minute}
	with := func(f func(o *auth.SignedOptions)) auth.SignedOptions {
		o := base
		f(&o)
		return o
	}
	valid := auth.DjangoDumps(base, alice, false, now)
	b64 := base64.RawURLEncoding.EncodeToString
	raw := func(payload string) string { return auth.DjangoSign(base, payload, now) }
	bomb := "." + b64(zlibOf(append([]byte(`{"user_id":1,"pad":"`), bytes.Repeat([]byte("x"), 1<<20)...)))
	for _, c := range []struct {
		name  string
		opts  auth.SignedOptions
		token string
		why   string
	}{
		{"salt mismatch", base, auth.DjangoDumps(with(func(o *auth.SignedOptions) { o.Salt = "other" }), alice, false, now), "bad signature"},
		{"default salt", base, auth.DjangoDumps(with(func(o *auth.SignedOptions) { o.Salt = "" }), alice, false, now), "bad signature"},
		{"wrong key", base, auth.DjangoDumps(with(func(o *auth.SignedOptions) { o.Key = "other" }), alice, false, now), "bad signature"},
		{"old key without fallback", with(func(o *auth.SignedOptions) { o.Key = "new key" }), valid, "bad signature"},
		{"sha1 for sha256", base, auth.DjangoDumps(with(func(o *auth.SignedOptions) { o.Algorithm = "sha1" }), alice, false, now), "bad signature"},
		{"expired", base, auth.DjangoDumps(base, alice, false, now.Add(-2*time.Minute)), "expired (signed 2m"},
		{"tampered payload", base, "f" + valid[1:], "bad signature"},
		{"tampered timestamp", base, strings.Replace(valid, ":", ":1", 1), "bad signature"},
		{"tampered signature", base, valid[:len(valid)-1] + "A", "bad signature"},
		{"signature with trailing bits", base, valid[:len(valid)-1] + string(valid[len(valid)-1]^1), "bad signature"},
		{"truncated", base, valid[:len(valid)-1], "bad signature"},
		{"no separator", base, "abc", "no separator"},
		{"empty", base, "", "no separator"},
		{"over 8 KiB", base, strings.Repeat("a", 9000) + valid, "longer than"},
		{"Signer token for TimestampSigner", with(func(o *auth.SignedOptions) { o.Value = true }),
			auth.DjangoSign(auth.SignedOptions{Key: testSecret, Salt: "canal.ws", NoTimestamp: true, NoMaxAge: true}, "42", now), "no timestamp"},
		{"bad timestamp", with(func(o *auth.SignedOptions) { o.Value = true }),
			auth.DjangoSign(auth.SignedOptions{Key: testSecret, Salt: "canal.ws", NoTimestamp: true, NoMaxAge: true}, "42:!x", now), "malformed timestamp"},
		{"huge timestamp", with(func(o *auth.SignedOptions) { o.Value = true }),
			auth.DjangoSign(auth.SignedOptions{Key: testSecret, Salt: "canal.ws", NoTimestamp: true, NoMaxAge: true}, "42:zzzzzzzzzzzzz", now), "malformed timestamp"},
		{"empty value", with(func(o *auth.SignedOptions) { o.Value = true }), auth.DjangoSign(base, "", now), "empty value"},
		{"not base64", base, raw("!!!"), "not base64"},
		{"not zlib", base, raw("." + b64([]byte("plain"))), "not zlib"},
		{"zip bomb", base, raw(bomb), "inflates past"},
		{"not JSON", base, raw(b64([]byte("{user_id:1}"))), "not JSON"},
		{"trailing data", base, raw(b64([]byte(`{"user_id":1} {}`))), "data after"},
		{"list", base, raw(b64([]byte(`[1]`))), "not an object"},
		{"float id", base, raw(b64([]byte(`4.2e1`))), "not an object"},
		{"empty string", base, raw(b64([]byte(`""`))), "not an object"},
		{"no user id", base, raw(b64([]byte(`{"username":"alice"}`))), `no "user_id" claim`},
		{"bool user id", base, raw(b64([]byte(`{"user_id":true}`))), `"user_id" is not an integer`},
		{"username not a string", base, raw(b64([]byte(`{"user_id":1,"username":["a"]}`))), `"username" is not a string`},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			u, err := mustSigned(t, c.opts)(context.Background(), c.token)
			checkRefused(t, c.token, u, err)
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("error %q does not say %q", err, c.why)
			}
		})
	}
}

func TestSignedEveryChange(t *testing.T) {
	t.Parallel()
	opts := auth.SignedOptions{Key: testSecret, Salt: "canal.ws", MaxAge: time.Minute}
	v := mustSigned(t, opts)
	checkEveryChange(t, v, auth.DjangoDumps(opts, alice, false, time.Now()))
	checkEveryChange(t, v, auth.DjangoDumps(opts, map[string]any{"user_id": 1, "g": strings.Repeat("ab", 40)}, true, time.Now()))
}

func TestSignedContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	v := mustSigned(t, auth.SignedOptions{Key: testSecret, NoMaxAge: true})
	if _, err := v(ctx, djangoVector); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want context.Canceled", err)
	}
}

func TestSignedOptionErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		opts auth.SignedOptions
		want string
	}{
		{"zero value", auth.SignedOptions{}, "SignedOptions.Key is empty"},
		{"no age policy", auth.SignedOptions{Key: "k"}, "SignedOptions.MaxAge is 0"},
		{"negative age", auth.SignedOptions{Key: "k", MaxAge: -time.Second}, "MaxAge is negative"},
		{"both", auth.SignedOptions{Key: "k", MaxAge: time.Second, NoMaxAge: true}, "MaxAge and NoMaxAge are both set"},
		{"Signer with MaxAge", auth.SignedOptions{Key: "k", MaxAge: time.Second, NoTimestamp: true}, "MaxAge is set with NoTimestamp"},
		{"Signer without NoMaxAge", auth.SignedOptions{Key: "k", NoTimestamp: true}, "set NoMaxAge"},
		{"empty fallback", auth.SignedOptions{Key: "k", NoMaxAge: true, Fallbacks: []string{"a", ""}}, "Fallbacks[1] is empty"},
		{"md5", auth.SignedOptions{Key: "k", NoMaxAge: true, Algorithm: "md5"}, `Algorithm "md5" is not supported`},
		{"letter sep", auth.SignedOptions{Key: "k", NoMaxAge: true, Sep: "a_"}, `Sep "a_" is unsafe`},
		{"backslash sep", auth.SignedOptions{Key: "k", NoMaxAge: true, Sep: `\`}, "is unsafe"},
		{"same keys", auth.SignedOptions{Key: "k", NoMaxAge: true, UserIDKey: "u", UsernameKey: "u"}, `both "u"`},
	} {
		v, err := auth.Signed(c.opts)
		if err == nil || v != nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "auth: ") {
			t.Errorf("%s: got (%v, %v); want an error saying %q", c.name, v != nil, err, c.want)
		}
	}
	if _, err := auth.Signed(auth.SignedOptions{Key: "k", NoMaxAge: true, Sep: "/"}); err != nil {
		t.Errorf("sep \"/\": %v", err)
	}
}

// FuzzSigned feeds the verifier arbitrary strings and mutations of valid tokens. It
// must never panic, accept only the tokens signed with the key (the fuzzer has no
// key: anything else it makes is a forgery), and say nothing of the input.
func FuzzSigned(f *testing.F) {
	opts := auth.SignedOptions{Key: testSecret, Salt: "canal.ws", NoMaxAge: true}
	at := time.Unix(1_800_000_000, 0)
	valid := map[string]bool{djangoVector: true}
	for _, obj := range []any{alice, 42, "x", map[string]any{"user_id": 1, "g": strings.Repeat("ab", 40)}} {
		valid[auth.DjangoDumps(opts, obj, false, at)] = true
		valid[auth.DjangoDumps(opts, obj, true, at)] = true
	}
	for tok := range valid {
		f.Add(tok)
	}
	f.Add("")
	f.Add(":")
	f.Add("::")
	f.Add(".eJy:1:x")
	v := mustSigned(f, opts)
	f.Fuzz(func(t *testing.T, tok string) {
		u, err := v(context.Background(), tok)
		if err == nil {
			if !valid[tok] {
				t.Fatalf("accepted a token not signed with the key: %q → %+v", tok, u)
			}
			if !u.Authenticated() {
				t.Fatalf("accepted %q as nobody", tok)
			}
			return
		}
		if !errors.Is(err, auth.ErrInvalid) {
			t.Fatalf("%q: error %v does not wrap ErrInvalid", tok, err)
		}
		if len(tok) > 64 && strings.Contains(err.Error(), tok) {
			t.Fatalf("error quotes the token: %v", err)
		}
	})
}

func BenchmarkSigned(b *testing.B) {
	opts := auth.SignedOptions{Key: testSecret, Salt: "canal.ws", MaxAge: time.Minute}
	v := mustSigned(b, opts)
	tok := auth.DjangoDumps(opts, alice, false, time.Now())
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
