package layers

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/canal-rt/canal"
)

// checkMessage applies Send's and GroupSend's checks to msg.
func checkMessage(msg canal.Message) error {
	if err := msg.ValidateType(); err != nil {
		return err
	}
	if _, ok := msg[asgiChannelKey]; ok {
		return fmt.Errorf("%w: %q is reserved", canal.ErrInvalidMessage, asgiChannelKey)
	}
	return nil
}

// The codec both layers share: channels_redis' serializer_format ("msgpack", or
// "json" in 4.2.1+), then Fernet when symmetric_encryption_keys are set. The core
// layer wraps it in a random prefix; the Pub/Sub layer sends it bare.

// marshal appends msg, plus extraKey: extra unless extraKey is empty, in the layer's
// serializer format.
func (b *redisBase) marshal(dst []byte, msg canal.Message, extraKey string, extra any) ([]byte, error) {
	if b.json {
		return appendJSONMessage(dst, msg, extraKey, extra)
	}
	return appendMessage(dst, msg, extraKey, extra)
}

// seal encrypts p[keep:] when encryption is on, keeping p[:keep] (a random prefix)
// in front of the token.
func (b *redisBase) seal(p []byte, keep int) []byte {
	if b.crypter == nil {
		return p
	}
	out := make([]byte, keep, keep+fernetTokenLen(len(p)-keep))
	copy(out, p[:keep])
	return b.crypter.encrypt(out, p[keep:])
}

// unmarshal decrypts body when encryption is on, refusing tokens older than ttl
// seconds (ttl 0: no time checks, Python's ttl=None), and decodes the message.
func (b *redisBase) unmarshal(body []byte, ttl int64) (canal.Message, error) {
	body, err := b.plaintext(body, ttl)
	if err != nil {
		return nil, err
	}
	if b.json {
		return decodeJSONMessage(body)
	}
	return decodeMessage(body)
}

// plaintext decrypts body when encryption is on (into a new buffer), as unmarshal.
func (b *redisBase) plaintext(body []byte, ttl int64) ([]byte, error) {
	if b.crypter == nil {
		return body, nil
	}
	var now int64
	if ttl > 0 {
		now = time.Now().Unix()
	}
	return b.crypter.decrypt(body, ttl, now)
}

// encode serializes msg for Redis: random prefix, then the (encrypted) body, with
// extra under __asgi_channel__ unless it is nil.
func (r *Redis) encode(msg canal.Message, extra any) ([]byte, error) {
	b := make([]byte, r.randLen, r.randLen+64)
	fillRandom(b)
	extraKey := ""
	if extra != nil {
		extraKey = asgiChannelKey
	}
	b, err := r.marshal(b, msg, extraKey, extra)
	if err != nil {
		return nil, err
	}
	return r.seal(b, r.randLen), nil
}

func fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rand.Uint64())
		copy(b[i:], w[:])
	}
}

// decode reads a stored member into a message, leaving __asgi_channel__ in it.
// Encrypted bodies older than Expiry (plus channels_redis' 10 s) are refused.
func (r *Redis) decode(member []byte) (canal.Message, error) {
	if len(member) < r.randLen {
		return nil, fmt.Errorf("%d bytes, shorter than the random prefix", len(member))
	}
	return r.unmarshal(member[r.randLen:], r.expirySec+10)
}

// decodeRouted is decode for the router: a group copy's channel names are left
// encoded, in a nameList that aliases member (see decodeRouted in msgpack.go). member
// is only read, and nothing decoded keeps it: the router passes a popped string's
// bytes without copying them.
func (r *Redis) decodeRouted(member []byte) (canal.Message, nameList, error) {
	if len(member) < r.randLen {
		return nil, nameList{}, fmt.Errorf("%d bytes, shorter than the random prefix", len(member))
	}
	body, err := r.plaintext(member[r.randLen:], r.expirySec+10)
	if err != nil {
		return nil, nameList{}, err
	}
	if r.json {
		msg, err := decodeJSONMessage(body)
		return msg, nameList{}, err
	}
	return decodeRouted(body)
}

// groupMember builds one key's stored copy: msg plus __asgi_channel__ = channels.
// With msgpack, pairs is msg already encoded (GroupSend encodes it once).
func (r *Redis) groupMember(msg canal.Message, n int, pairs []byte, channels []string) ([]byte, error) {
	if r.json {
		return r.encode(msg, channels)
	}
	b := make([]byte, r.randLen, r.randLen+len(pairs)+32+len(channels)*72)
	fillRandom(b)
	b = appendMapHeader(b, n+1)
	b = append(b, pairs...)
	b, _ = appendString(b, asgiChannelKey)
	b = appendArrayHeader(b, len(channels))
	var err error
	for _, ch := range channels {
		if b, err = appendString(b, ch); err != nil {
			return nil, err
		}
	}
	return r.seal(b, r.randLen), nil
}

// encode serializes msg as channels_redis.pubsub does: no random prefix, no
// __asgi_channel__.
func (r *RedisPubSub) encode(msg canal.Message) ([]byte, error) {
	b, err := r.marshal(nil, msg, "", nil)
	if err != nil {
		return nil, err
	}
	return r.seal(b, 0), nil
}

// decode reads a published message; channels_redis.pubsub decrypts with ttl=None.
func (r *RedisPubSub) decode(payload []byte) (canal.Message, error) {
	return r.unmarshal(payload, 0)
}
