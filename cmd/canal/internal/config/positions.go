package config

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// lines maps key paths as errors name them ("listen", "route[1].groups[0]",
// "auth.session.url") to the line they are written on, so that a check that runs
// after decoding can still say where; an array of tables ("layer.history") is also
// at its first element's line. numbers are the keys whose value is a bare number.
// It is built with go-toml's own parser; a document that does not parse gives empty
// maps (decoding reports that error).
func lines(doc []byte) (out map[string]int, numbers map[string]bool) {
	out = map[string]int{}
	numbers = map[string]bool{}
	var p unstable.Parser
	p.Reset(doc)
	counts := map[string]int{} // array tables seen, by dotted name
	var table string           // current table, with indexes: "route[1].receive"
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			name := keyName(e.Key())
			table = indexed(name, counts)
			l := line(&p, e.Key())
			if e.Kind == unstable.ArrayTable {
				if _, ok := out[table]; !ok {
					out[table] = l
				}
				i := counts[name]
				counts[name] = i + 1
				table += "[" + strconv.Itoa(i) + "]"
			}
			out[table] = l
		case unstable.KeyValue:
			key := keyName(e.Key())
			if table != "" {
				key = table + "." + key
			}
			out[key] = line(&p, e.Key())
			if v := e.Value(); v != nil && (v.Kind == unstable.Integer || v.Kind == unstable.Float) {
				numbers[key] = true
			}
			if v := e.Value(); v != nil && v.Kind == unstable.Array {
				it := v.Children()
				for i := 0; it.Next(); i++ {
					n := it.Node()
					if n.Raw.Length > 0 {
						out[key+"["+strconv.Itoa(i)+"]"] = p.Shape(n.Raw).Start.Line
					} else {
						out[key+"["+strconv.Itoa(i)+"]"] = out[key]
					}
				}
			}
		}
	}
	return out, numbers
}

func line(p *unstable.Parser, it unstable.Iterator) int {
	if it.Next() && it.Node().Raw.Length > 0 {
		return p.Shape(it.Node().Raw).Start.Line
	}
	return 0
}

func keyName(it unstable.Iterator) string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return strings.Join(parts, ".")
}

// indexed puts the current index of each enclosing array table into a table name:
// "route.receive" inside the second [[route]] is "route[1].receive".
func indexed(name string, counts map[string]int) string {
	parts := strings.Split(name, ".")
	var b strings.Builder
	for i, part := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(part)
		prefix := strings.Join(parts[:i+1], ".")
		if n := counts[prefix]; n > 0 && i < len(parts)-1 {
			b.WriteString("[" + strconv.Itoa(n-1) + "]")
		}
	}
	return b.String()
}

// durationKeys are the key paths (without indexes) of every Duration in Config, found
// by reflection so that a new duration key is covered without a list to keep.
var durationKeys = func() map[string]bool {
	out := map[string]bool{}
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft == reflect.TypeFor[Duration]() {
				out[prefix+name] = true
				continue
			}
			walk(f.Type, prefix+name+".")
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out
}()

// bareDurations reports durations written as bare numbers (ttl = 600): go-toml
// would hand "600" to Duration without a line to report, and a number without a
// unit is ambiguous anyway (Django's REALTIME_HISTORY writes seconds).
func bareDurations(v *validator, numbers map[string]bool) {
	for key := range numbers {
		if durationKeys[stripIndexes(key)] {
			v.errf(key, "a duration needs a unit: write it as text, e.g. \"600s\" or \"10m\"")
		}
	}
}
