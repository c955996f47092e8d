package layers

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// This file implements Fernet (https://github.com/fernet/spec) the way channels_redis
// uses it for symmetric_encryption_keys: every key string is hashed with SHA-256 and
// the 32 bytes are the Fernet key (bytes 0–15 sign with HMAC-SHA256, bytes 16–31
// encrypt with AES-128-CBC). The first key encrypts; decryption tries every key, so
// keys can be rotated by putting the new one first. A token is
//
//	base64url(0x80 | uint64 BE seconds | 16-byte IV | AES-CBC(PKCS7(data)) | HMAC)
//
// with padding, as Python's cryptography writes it.

const (
	fernetVersion  = 0x80
	fernetOverhead = 1 + 8 + aes.BlockSize + sha256.Size // everything but the ciphertext
	// fernetMaxClockSkew is how far in the future a token's time may be (cryptography's
	// _MAX_CLOCK_SKEW).
	fernetMaxClockSkew = 60
)

// errFernet is wrapped by every token error; like cryptography's InvalidToken it does
// not say which check failed beyond a short reason.
var errFernet = errors.New("fernet: invalid token")

type fernetKey struct {
	sign  []byte
	block cipher.Block
}

// fernet encrypts with keys[0] and decrypts with any of keys.
type fernet struct {
	keys []fernetKey
}

// newCodec checks channels_redis' serializer_format ("" or "msgpack", or "json") and
// symmetric_encryption_keys, shared by both Redis layers.
func newCodec(format string, keys []string) (json bool, crypter *fernet, err error) {
	switch format {
	case "", "msgpack":
	case "json":
		json = true
	default:
		return false, nil, fmt.Errorf("unknown SerializerFormat %q (want msgpack or json)", format)
	}
	crypter, err = newFernet(keys)
	return json, crypter, err
}

// newFernet derives the keys from channels_redis' key strings. It returns nil for no
// keys (no encryption).
func newFernet(keys []string) (*fernet, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	f := &fernet{keys: make([]fernetKey, len(keys))}
	for i, k := range keys {
		sum := sha256.Sum256([]byte(k))
		block, err := aes.NewCipher(sum[16:])
		if err != nil {
			return nil, fmt.Errorf("fernet: key %d: %w", i, err) // cannot happen: 16 bytes
		}
		f.keys[i] = fernetKey{sign: append([]byte(nil), sum[:16]...), block: block}
	}
	return f, nil
}

// fernetTokenLen returns the length of the token for n bytes of plaintext.
func fernetTokenLen(n int) int {
	return base64.URLEncoding.EncodedLen(fernetOverhead + (n/aes.BlockSize+1)*aes.BlockSize)
}

// encrypt appends the token for plaintext to dst.
func (f *fernet) encrypt(dst, plaintext []byte) []byte {
	var iv [aes.BlockSize]byte
	rand.Read(iv[:]) // never fails (crypto/rand crashes the program instead)
	return f.encryptAt(dst, plaintext, time.Now().Unix(), iv[:])
}

// encryptAt is encrypt with a given time and IV, for tests against Python's vectors.
func (f *fernet) encryptAt(dst, plaintext []byte, now int64, iv []byte) []byte {
	k := f.keys[0]
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	raw := make([]byte, 0, fernetOverhead+len(plaintext)+pad)
	raw = append(raw, fernetVersion)
	raw = binary.BigEndian.AppendUint64(raw, uint64(now))
	raw = append(raw, iv...)
	start := len(raw)
	raw = append(raw, plaintext...)
	for range pad {
		raw = append(raw, byte(pad))
	}
	cipher.NewCBCEncrypter(k.block, iv).CryptBlocks(raw[start:], raw[start:])
	mac := hmac.New(sha256.New, k.sign)
	mac.Write(raw)
	raw = mac.Sum(raw)
	return base64.URLEncoding.AppendEncode(dst, raw)
}

// decrypt returns the plaintext of token, checked against every key. With ttl > 0 a
// token older than ttl seconds or more than 60 s in the future is refused, as
// cryptography's MultiFernet.decrypt(token, ttl) does; with ttl <= 0 (Python's
// ttl=None) its time is not checked at all.
func (f *fernet) decrypt(token []byte, ttl int64, now int64) ([]byte, error) {
	raw, err := base64.URLEncoding.AppendDecode(nil, token)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", errFernet)
	}
	if len(raw) < fernetOverhead+aes.BlockSize || raw[0] != fernetVersion {
		return nil, fmt.Errorf("%w: bad version or length", errFernet)
	}
	ct := raw[1+8+aes.BlockSize : len(raw)-sha256.Size]
	if len(ct)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: bad length", errFernet)
	}
	ts := int64(binary.BigEndian.Uint64(raw[1:9]))
	if ts < 0 {
		return nil, fmt.Errorf("%w: bad timestamp", errFernet)
	}
	if ttl > 0 && ts+ttl < now {
		return nil, fmt.Errorf("%w: expired", errFernet)
	}
	if ttl > 0 && now+fernetMaxClockSkew < ts {
		return nil, fmt.Errorf("%w: timestamp in the future", errFernet)
	}
	signed, sig := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	for _, k := range f.keys {
		mac := hmac.New(sha256.New, k.sign)
		mac.Write(signed)
		if !hmac.Equal(mac.Sum(nil), sig) {
			continue
		}
		iv := raw[9 : 9+aes.BlockSize]
		out := make([]byte, len(ct))
		cipher.NewCBCDecrypter(k.block, iv).CryptBlocks(out, ct)
		pad := int(out[len(out)-1])
		if pad == 0 || pad > aes.BlockSize {
			return nil, fmt.Errorf("%w: bad padding", errFernet)
		}
		good := 1
		for _, b := range out[len(out)-pad:] {
			good &= subtle.ConstantTimeByteEq(b, byte(pad))
		}
		if good != 1 {
			return nil, fmt.Errorf("%w: bad padding", errFernet)
		}
		return out[:len(out)-pad], nil
	}
	return nil, fmt.Errorf("%w: signature matches no key", errFernet)
}
