package layers

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// Tokens made by Python's cryptography 38 with the key derivation of channels_redis:
// Fernet(urlsafe_b64encode(sha256(key))).  _encrypt_from_parts(plaintext, time, iv).
var fernetVectors = []struct {
	key       string
	plaintext []byte
	at        int64
	iv        []byte
	token     string
}{
	{"key-one", []byte{}, 1700000000, unhex("000102030405060708090a0b0c0d0e0f"),
		"gAAAAABlU_EAAAECAwQFBgcICQoLDA0ODywHOOXLCL8SlrbWlFrLV38zRNLE3SyGWBpRr-9dhLvXMpKfLAStCd_GE-A2dUIDlw=="},
	{"key-one", unhex("82a474797065ac636861742e6d657373616765a474657874a668c3a96c6c6f"), 1700000000, make([]byte, 16),
		"gAAAAABlU_EAAAAAAAAAAAAAAAAAAAAAALYIm_-4HY8wD5VX7dNtuvKRV5_cDD-IMrpQLRiZRYZmdtSD0u8TxnGPU5RG9F360tnUhYIFUK_c348SXokIpj0="},
	{"", []byte("exactly16bytes!!"), 1, bytes.Repeat([]byte{0xff}, 16),
		"gAAAAAAAAAAB_____________________zYQM1jlFa8voQT4-GuIj4DnT_KpQr285OtkPvpFGCdJzYTkk-vPQw9sRqviFii1-xqQvnz4n6X3BT7lGbLH9dk="},
	{"ключ", bytes.Repeat([]byte("x"), 33), 1 << 40, unhex("6465666768696a6b6c6d6e6f70717273"),
		"gAAAAQAAAAAAZGVmZ2hpamtsbW5vcHFyc3SOQx7NJkfPICVrup3Q-hDEpUZPDbs-4Bp5pMMXhcGjG8wbN6X_NpjYvqOh8E31otAys4rz8nCTwi4q1V3MV605I0xcdzl507waPyiF4_Y0"},
}

func mustFernet(t testing.TB, keys ...string) *fernet {
	t.Helper()
	f, err := newFernet(keys)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFernetPythonVectors(t *testing.T) {
	t.Parallel()
	for _, v := range fernetVectors {
		f := mustFernet(t, v.key)
		got := f.encryptAt([]byte("pre"), v.plaintext, v.at, v.iv)
		if string(got) != "pre"+v.token {
			t.Errorf("key %q: token\n %s\nwant\n %s", v.key, got[3:], v.token)
		}
		if n := fernetTokenLen(len(v.plaintext)); n != len(v.token) {
			t.Errorf("fernetTokenLen(%d) = %d; want %d", len(v.plaintext), n, len(v.token))
		}
		pt, err := f.decrypt([]byte(v.token), 0, v.at)
		if err != nil || !bytes.Equal(pt, v.plaintext) {
			t.Errorf("key %q: decrypt = %x, %v", v.key, pt, err)
		}
	}
}

func TestFernetNoKeys(t *testing.T) {
	t.Parallel()
	f, err := newFernet(nil)
	if f != nil || err != nil {
		t.Fatalf("newFernet(nil) = %v, %v; want no encryption", f, err)
	}
}

func TestFernetRotation(t *testing.T) {
	t.Parallel()
	old := mustFernet(t, "old")
	rotated := mustFernet(t, "new", "old")
	onlyNew := mustFernet(t, "new")
	now := time.Now().Unix()

	tokOld := old.encrypt(nil, []byte("from an old peer"))
	if pt, err := rotated.decrypt(tokOld, 70, now); err != nil || string(pt) != "from an old peer" {
		t.Fatalf("rotated keys cannot read the old key's token: %q, %v", pt, err)
	}
	tokNew := rotated.encrypt(nil, []byte("fresh"))
	if pt, err := onlyNew.decrypt(tokNew, 70, now); err != nil || string(pt) != "fresh" {
		t.Fatalf("the first key does not encrypt: %q, %v", pt, err)
	}
	if _, err := old.decrypt(tokNew, 70, now); !errors.Is(err, errFernet) {
		t.Fatalf("old key read a token of the new key: %v", err)
	}
	// Every token is different (random IV).
	if a, b := rotated.encrypt(nil, []byte("x")), rotated.encrypt(nil, []byte("x")); bytes.Equal(a, b) {
		t.Fatal("two tokens are equal")
	}
}

func TestFernetTime(t *testing.T) {
	t.Parallel()
	f := mustFernet(t, "k")
	const at, ttl = 1_700_000_000, 70
	tok := f.encryptAt(nil, []byte("x"), at, make([]byte, 16))
	tests := []struct {
		now int64
		ttl int64
		ok  bool
	}{
		{at, ttl, true},
		{at + ttl, ttl, true},      // exactly ttl old: still good (ts + ttl < now is false)
		{at + ttl + 1, ttl, false}, // older
		{at + 1_000_000, 0, true},  // no ttl
		{at - 60, ttl, true},       // 60 s in the future: allowed skew
		{at - 61, ttl, false},      // further: refused
		{at - 61, 0, true},         // without ttl, time is not checked (Python's ttl=None)
		{at - 1_000_000, 0, true},
	}
	for _, tt := range tests {
		_, err := f.decrypt(tok, tt.ttl, tt.now)
		if tt.ok != (err == nil) {
			t.Errorf("now=at%+d ttl=%d: err = %v; want ok=%v", tt.now-at, tt.ttl, err, tt.ok)
		}
	}
}

func TestFernetRejectsTampering(t *testing.T) {
	t.Parallel()
	f := mustFernet(t, "k")
	now := time.Now().Unix()
	tok := f.encrypt(nil, []byte("secret message"))
	raw, _ := base64.URLEncoding.DecodeString(string(tok))
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(raw)
			bad[i] ^= bit
			if i >= 1 && i < 9 { // the timestamp: keep it near now so the signature is what fails
				continue
			}
			if _, err := f.decrypt([]byte(base64.URLEncoding.EncodeToString(bad)), 0, now); !errors.Is(err, errFernet) {
				t.Fatalf("byte %d ^ %#x accepted: %v", i, bit, err)
			}
		}
	}
	// Timestamp bits covered by the signature too.
	bad := bytes.Clone(raw)
	bad[8] ^= 1
	if _, err := f.decrypt([]byte(base64.URLEncoding.EncodeToString(bad)), 0, now); !errors.Is(err, errFernet) {
		t.Fatalf("changed timestamp accepted: %v", err)
	}
	for name, tok := range map[string]string{
		"empty":           "",
		"not base64":      "gAAA*AAA",
		"no padding":      strings.TrimRight(string(tok), "="),
		"standard base64": strings.NewReplacer("-", "+", "_", "/").Replace(string(tok)) + "+/",
		"short":           base64.URLEncoding.EncodeToString(raw[:fernetOverhead]),
		"odd length":      base64.URLEncoding.EncodeToString(append(bytes.Clone(raw), 0)),
		"version":         base64.URLEncoding.EncodeToString(append([]byte{0x81}, raw[1:]...)),
		"truncated":       base64.URLEncoding.EncodeToString(raw[:len(raw)-1]),
	} {
		if _, err := f.decrypt([]byte(tok), 0, now); !errors.Is(err, errFernet) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

// TestFernetBadPadding signs a ciphertext whose padding is wrong: the signature holds,
// the padding check must refuse it.
func TestFernetBadPadding(t *testing.T) {
	t.Parallel()
	f := mustFernet(t, "k")
	now := time.Now().Unix()
	for _, lastBlock := range [][]byte{
		append(bytes.Repeat([]byte{'a'}, 15), 0),    // pad 0
		append(bytes.Repeat([]byte{'a'}, 15), 17),   // pad > block
		append(bytes.Repeat([]byte{'a'}, 14), 3, 2), // pad 2 with a wrong byte before
	} {
		// encryptAt pads; encrypt 16 bytes and drop the added padding block instead.
		tok := f.encryptAt(nil, lastBlock, now, make([]byte, 16))
		raw, _ := base64.URLEncoding.DecodeString(string(tok))
		body := raw[:len(raw)-32-16] // without HMAC and the full padding block
		k := f.keys[0]
		mac := hmacSHA256(k.sign, body)
		forged := base64.URLEncoding.EncodeToString(append(bytes.Clone(body), mac...))
		if _, err := f.decrypt([]byte(forged), 0, now); !errors.Is(err, errFernet) || !strings.Contains(err.Error(), "padding") {
			t.Errorf("last block %x: err = %v; want a padding error", lastBlock, err)
		}
	}
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}
