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

// encode serializes msg for Redis: random prefix, then the (encrypted) body, with
// extra under __asgi_channel__ unless it is nil.
func (r *Redis) encode(msg canal.Message, extra any) ([]byte, error) {
	b := make([]byte, r.randLen, r.randLen+64)
	r.fillRandom(b)
	extraKey := ""
	if extra != nil {
		extraKey = asgiChannelKey
	}
	var err error
	if r.json {
		b, err = appendJSONMessage(b, msg, extraKey, extra)
	} else {
		b, err = appendMessage(b, msg, extraKey, extra)
	}
	if err != nil {
		return nil, err
	}
	return r.seal(b), nil
}

// seal encrypts b[randLen:] when encryption is on.
func (r *Redis) seal(b []byte) []byte {
	if r.crypter == nil {
		return b
	}
	out := make([]byte, r.randLen, r.randLen+fernetTokenLen(len(b)-r.randLen))
	copy(out, b[:r.randLen])
	return r.crypter.encrypt(out, b[r.randLen:])
}

func (r *Redis) fillRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rand.Uint64())
		copy(b[i:], w[:])
	}
}

// decode reads a stored member into a message, leaving __asgi_channel__ in it.
func (r *Redis) decode(member []byte) (canal.Message, error) {
	if len(member) < r.randLen {
		return nil, fmt.Errorf("%d bytes, shorter than the random prefix", len(member))
	}
	body := member[r.randLen:]
	if r.crypter != nil {
		var err error
		if body, err = r.crypter.decrypt(body, r.expiry+10, time.Now().Unix()); err != nil {
			return nil, err
		}
	}
	if r.json {
		return decodeJSONMessage(body)
	}
	return decodeMessage(body)
}

// groupMember builds one key's stored copy: msg plus __asgi_channel__ = channels.
func (r *Redis) groupMember(msg canal.Message, n int, pairs []byte, channels []string) ([]byte, error) {
	if r.json {
		return r.encode(msg, channels)
	}
	b := make([]byte, r.randLen, r.randLen+len(pairs)+32+len(channels)*72)
	r.fillRandom(b)
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
	return r.seal(b), nil
}

// encode serializes msg as channels_redis.pubsub does: msgpack or JSON, maybe Fernet.
func (r *RedisPubSub) encode(msg canal.Message) ([]byte, error) {
	var b []byte
	var err error
	if r.json {
		b, err = appendJSONMessage(nil, msg, "", nil)
	} else {
		b, err = appendMessage(nil, msg, "", nil)
	}
	if err != nil {
		return nil, err
	}
	if r.crypter != nil {
		b = r.crypter.encrypt(make([]byte, 0, fernetTokenLen(len(b))), b)
	}
	return b, nil
}

func (r *RedisPubSub) decode(payload []byte) (canal.Message, error) {
	if r.crypter != nil {
		var err error
		// channels_redis.pubsub decrypts with ttl=None: no time checks.
		if payload, err = r.crypter.decrypt(payload, 0, 0); err != nil {
			return nil, err
		}
	}
	if r.json {
		return decodeJSONMessage(payload)
	}
	return decodeMessage(payload)
}
