package layers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/canal-rt/canal"
)

// The "json" serializer_format of channels_redis 4.2.1+: json.dumps(message) as UTF-8.
// Python reads integers written without '.' or an exponent as int and the others as
// float, so floats are written with one of them ("1.0", "1e+16") and come back as
// floats. JSON has no bytes (Python cannot send them either), and Go's decoder has no
// NaN or Infinity (Python writes them unless allow_nan=False): both are errors here.

var errJSON = errors.New("json")

func jsonErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errJSON}, args...)...)
}

// appendJSONMessage appends m, plus extraKey: extraVal when extraKey is not empty.
func appendJSONMessage(b []byte, m canal.Message, extraKey string, extraVal any) ([]byte, error) {
	b = append(b, '{')
	first := true
	var err error
	for k, v := range m {
		if !first {
			b = append(b, ", "...)
		}
		first = false
		if b, err = appendJSONString(b, k); err != nil {
			return b, err
		}
		b = append(b, ": "...)
		if b, err = appendJSON(b, v, 1); err != nil {
			return b, fmt.Errorf("%w (key %q)", err, k)
		}
	}
	if extraKey != "" {
		if !first {
			b = append(b, ", "...)
		}
		b, _ = appendJSONString(b, extraKey)
		b = append(b, ": "...)
		if b, err = appendJSON(b, extraVal, 1); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

func appendJSON(b []byte, v any, depth int) ([]byte, error) {
	if depth >= msgpackMaxDepth {
		return b, jsonErrorf("nesting deeper than %d", msgpackMaxDepth)
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return appendJSONString(b, v)
	case []byte:
		return b, jsonErrorf("bytes cannot be sent with the json serializer")
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case uint64:
		return strconv.AppendUint(b, v, 10), nil
	case float64:
		return appendJSONFloat(b, v)
	case []any:
		b = append(b, '[')
		var err error
		for i, e := range v {
			if i > 0 {
				b = append(b, ", "...)
			}
			if b, err = appendJSON(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		return appendJSONMap(b, v, depth)
	case canal.Message:
		return appendJSONMap(b, v, depth)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Bool:
		return strconv.AppendBool(b, rv.Bool()), nil
	case reflect.String:
		return appendJSONString(b, rv.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(b, rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.AppendUint(b, rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return appendJSONFloat(b, rv.Float())
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(b, "null"...), nil
		}
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			return b, jsonErrorf("bytes cannot be sent with the json serializer")
		}
		b = append(b, '[')
		var err error
		for i := range rv.Len() {
			if i > 0 {
				b = append(b, ", "...)
			}
			if b, err = appendJSON(b, rv.Index(i).Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return b, jsonErrorf("map key type %s: keys must be strings", rv.Type().Key())
		}
		b = append(b, '{')
		var err error
		for i, it := 0, rv.MapRange(); it.Next(); i++ {
			if i > 0 {
				b = append(b, ", "...)
			}
			if b, err = appendJSONString(b, it.Key().String()); err != nil {
				return b, err
			}
			b = append(b, ": "...)
			if b, err = appendJSON(b, it.Value().Interface(), depth+1); err != nil {
				return b, err
			}
		}
		return append(b, '}'), nil
	}
	if !rv.IsValid() {
		return append(b, "null"...), nil
	}
	return b, jsonErrorf("cannot encode a value of type %s", rv.Type())
}

func appendJSONMap(b []byte, m map[string]any, depth int) ([]byte, error) {
	b = append(b, '{')
	first := true
	var err error
	for k, v := range m {
		if !first {
			b = append(b, ", "...)
		}
		first = false
		if b, err = appendJSONString(b, k); err != nil {
			return b, err
		}
		b = append(b, ": "...)
		if b, err = appendJSON(b, v, depth+1); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, jsonErrorf("%v cannot be sent with the json serializer", f)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'g', -1, 64)
	if !bytes.ContainsAny(b[start:], ".e") {
		b = append(b, ".0"...) // keep it a float for Python
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return b, jsonErrorf("string is not valid UTF-8")
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"'), nil
}

// decodeJSONMessage decodes a JSON object, numbers as int64 (uint64 above MaxInt64)
// when written without '.' or exponent, else float64.
func decodeJSONMessage(data []byte) (canal.Message, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonErrorf("%v", err)
	}
	if rest := bytes.Trim(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, jsonErrorf("extra data after the message")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, jsonErrorf("message is not an object")
	}
	out, err := jsonNumbers(m, 0)
	if err != nil {
		return nil, err
	}
	return canal.Message(out.(map[string]any)), nil
}

// jsonNumbers replaces json.Number values in place, as Python's json.loads types them.
func jsonNumbers(v any, depth int) (any, error) {
	if depth >= msgpackMaxDepth {
		return nil, jsonErrorf("nesting deeper than %d", msgpackMaxDepth)
	}
	var err error
	switch v := v.(type) {
	case json.Number:
		s := string(v)
		if strings.ContainsAny(s, ".eE") {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, jsonErrorf("number %.30s: %v", s, err)
			}
			return f, nil
		}
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return u, nil
		}
		return nil, jsonErrorf("integer %.30s does not fit in 64 bits", s)
	case []any:
		for i, e := range v {
			if v[i], err = jsonNumbers(e, depth+1); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k, e := range v {
			if v[k], err = jsonNumbers(e, depth+1); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}
