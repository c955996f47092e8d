package canal_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/canal-rt/canal"
)

// fromJSON builds a User whose Attrs are decoded as the verifiers decode them.
func fromJSON(t *testing.T, doc string, useNumber bool) canal.User {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader([]byte(doc)))
	if useNumber {
		dec.UseNumber()
	}
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return canal.User{ID: "1", Attrs: m}
}

const claimsDoc = `{
	"is_staff": true, "is_active": false, "one": 1, "yes": "true",
	"email": "a@example.com", "tenant_id": 7, "neg": -3, "text_id": "42", "plus": "+42",
	"hex": "0x2a", "frac": 1.5, "whole_float": 2.0, "exp": 1e3, "big": 9007199254740993,
	"huge": 99999999999999999999, "empty": "",
	"groups": ["editors", "staff"], "mixed": ["a", 1], "no_groups": [],
	"content_types": [4, 7, "9"], "bad_ints": [1, 2.5], "obj": {"a": 1}, "null": null
}`

func TestUserAccessors(t *testing.T) {
	t.Parallel()
	for _, useNumber := range []bool{true, false} {
		u := fromJSON(t, claimsDoc, useNumber)
		// float64 decoding cannot tell 9007199254740993 from ...992: refused.
		big := int64(9007199254740993)
		if !useNumber {
			big = 0
		}
		t.Run(fmt.Sprintf("UseNumber=%v", useNumber), func(t *testing.T) {
			t.Parallel()
			for _, c := range []struct {
				name string
				got  any
				want any
			}{
				{"Bool true", u.Bool("is_staff"), true},
				{"Bool false", u.Bool("is_active"), false},
				{"Bool number", u.Bool("one"), false},
				{"Bool string", u.Bool("yes"), false},
				{"Bool absent", u.Bool("missing"), false},
				{"Bool null", u.Bool("null"), false},

				{"String", u.String("email"), "a@example.com"},
				{"String empty", u.String("empty"), ""},
				{"String integer", u.String("tenant_id"), "7"},
				{"String negative", u.String("neg"), "-3"},
				{"String fraction", u.String("frac"), ""},
				{"String bool", u.String("is_staff"), ""},
				{"String list", u.String("groups"), ""},
				{"String object", u.String("obj"), ""},
				{"String absent", u.String("missing"), ""},

				{"Int64", u.Int64("tenant_id"), int64(7)},
				{"Int64 negative", u.Int64("neg"), int64(-3)},
				{"Int64 digits", u.Int64("text_id"), int64(42)},
				{"Int64 plus sign", u.Int64("plus"), int64(0)},
				{"Int64 hex", u.Int64("hex"), int64(0)},
				{"Int64 fraction", u.Int64("frac"), int64(0)},
				{"Int64 huge", u.Int64("huge"), int64(0)},
				{"Int64 past 2^53", u.Int64("big"), big},
				{"Int64 bool", u.Int64("is_staff"), int64(0)},
				{"Int64 absent", u.Int64("missing"), int64(0)},

				{"Strings", u.Strings("groups"), []string{"editors", "staff"}},
				{"Strings mixed", u.Strings("mixed"), []string(nil)},
				{"Strings empty", u.Strings("no_groups"), []string(nil)},
				{"Strings scalar", u.Strings("email"), []string(nil)},
				{"Strings absent", u.Strings("missing"), []string(nil)},

				{"Int64s", u.Int64s("content_types"), []int64{4, 7, 9}},
				{"Int64s fraction", u.Int64s("bad_ints"), []int64(nil)},
				{"Int64s strings", u.Int64s("groups"), []int64(nil)},
				{"Int64s empty", u.Int64s("no_groups"), []int64(nil)},
				{"Int64s absent", u.Int64s("missing"), []int64(nil)},
			} {
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
				}
			}
		})
	}
}

// Whole floats decode to float64 without UseNumber; exponents are not integers in
// json.Number form, but are in float64 form when exact.
func TestUserInt64Float(t *testing.T) {
	t.Parallel()
	u := fromJSON(t, claimsDoc, false)
	if got := u.Int64("whole_float"); got != 2 {
		t.Errorf("Int64(2.0) as float64 = %d, want 2", got)
	}
	n := fromJSON(t, claimsDoc, true)
	if got := n.Int64("exp"); got != 0 {
		t.Errorf("Int64(json.Number 1e3) = %d, want 0", got)
	}
}

// Users built in Go (tests, custom verifiers) carry Go types.
func TestUserGoValues(t *testing.T) {
	t.Parallel()
	groups := []string{"a"}
	u := canal.User{Attrs: map[string]any{
		"i": 5, "i64": int64(-6), "u64": uint64(1 << 63), "strs": groups,
		"ints": []int{1, 2}, "i64s": []int64{3},
	}}
	for _, c := range []struct {
		name string
		got  any
		want any
	}{
		{"int", u.Int64("i"), int64(5)},
		{"int64", u.Int64("i64"), int64(-6)},
		{"uint64 past int64", u.Int64("u64"), int64(0)},
		{"String of int", u.String("i"), "5"},
		{"[]string", u.Strings("strs"), []string{"a"}},
		{"[]int", u.Int64s("ints"), []int64{1, 2}},
		{"[]int64", u.Int64s("i64s"), []int64{3}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// The returned slice is a copy: changing it leaves the user as it was.
	u.Strings("strs")[0] = "changed"
	if groups[0] != "a" {
		t.Error("Strings returned the user's own slice")
	}
	if (canal.User{}).Bool("x") || (canal.User{}).Strings("x") != nil {
		t.Error("the anonymous user has claims")
	}
}

func ExampleUser_Int64s() {
	// Attrs as a verifier decodes them from Django's JSON.
	u := canal.User{ID: "42", Username: "alice", Attrs: map[string]any{
		"is_staff":      false,
		"tenant_id":     json.Number("7"),
		"groups":        []any{"editors"},
		"content_types": []any{json.Number("4"), json.Number("9")},
	}}
	canEdit := func(ct int64) bool {
		for _, id := range u.Int64s("content_types") {
			if id == ct {
				return true
			}
		}
		return u.Bool("is_staff")
	}
	fmt.Println(u.Int64("tenant_id"), u.Strings("groups"), canEdit(9), canEdit(5))
	// Output: 7 [editors] true false
}
