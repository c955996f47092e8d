package consumer

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

func TestMarshalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		v       any
		want    string
		wantErr bool
	}{
		{"HTML characters stay as they are", map[string]string{"t": "<a href='x'>&</a>"}, `{"t":"<a href='x'>&</a>"}`, false},
		{"no trailing newline", 42, `42`, false},
		{"UTF-8 stays UTF-8", "é✓", `"é✓"`, false},
		{"NaN", math.NaN(), "", true},
		{"-Inf nested", map[string]any{"a": []any{1, math.Inf(-1)}}, "", true},
		{"unsupported type", make(chan int), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := marshalJSON(tt.v)
			if tt.wantErr {
				var uv *json.UnsupportedValueError
				var ut *json.UnsupportedTypeError
				if !errors.Is(err, ErrEncode) || !(errors.As(err, &uv) || errors.As(err, &ut)) {
					t.Fatalf("error %v; want ErrEncode wrapping json's error", err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestMarshalJSONFreshSlices: frames are queued and shared, so each result must own
// its bytes, whatever the pool does.
func TestMarshalJSONFreshSlices(t *testing.T) {
	t.Parallel()
	a, err := marshalJSON("first value")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := marshalJSON("second, different"); err != nil {
			t.Fatal(err)
		}
	}
	if string(a) != `"first value"` {
		t.Fatalf("first result changed to %q", a)
	}
	b, _ := marshalJSON("x")
	if cap(b) > len(b)+16 {
		t.Errorf("cap %d for %d bytes: the result keeps a pooled buffer", cap(b), len(b))
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	v := map[string]any{"type": "group", "seq": int64(42), "ts": int64(1700000000000), "text": "hello, everyone"}
	b.Run("marshalJSON", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := marshalJSON(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := json.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
