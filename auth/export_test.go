package auth

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"time"
)

// DjangoSign returns value signed as Django's TimestampSigner signs it at the time at,
// or as Signer does when opts.NoTimestamp is set: the tests' way to make tokens Django
// cannot (fuzz seeds, odd payloads). Interop tests check the result against Django.
func DjangoSign(opts SignedOptions, value string, at time.Time) string {
	v, err := newSigned(opts)
	if err != nil {
		panic(err)
	}
	if v.timestamp {
		value += v.sep + base62Encode(at.Unix())
	}
	return value + v.sep + string(v.keys[0].signature(nil, value))
}

// DjangoDumps returns obj as signing.dumps(obj, compress=compress) makes it.
func DjangoDumps(opts SignedOptions, obj any, compress bool, at time.Time) string {
	data, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	return DjangoSign(opts, EncodePayload(data, compress), at)
}

// EncodePayload is sign_object's base64, with zlib when it saves space and compress
// is set, as Django decides.
func EncodePayload(data []byte, compress bool) string {
	if compress {
		var z bytes.Buffer
		w := zlib.NewWriter(&z)
		w.Write(data)
		w.Close()
		if z.Len() < len(data)-1 {
			return "." + base64.RawURLEncoding.EncodeToString(z.Bytes())
		}
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

func base62Encode(n int64) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	if n == 0 {
		return "0"
	}
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	var b []byte
	for n > 0 {
		b = append([]byte{digits[n%62]}, b...)
		n /= 62
	}
	return sign + string(b)
}
