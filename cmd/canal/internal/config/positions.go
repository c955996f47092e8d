package config

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// lines maps key paths as errors name them ("listen", "route[1].groups[0]",
// "auth.session.url") to the line they are written on, so that a check that runs
// after decoding can still say where. It is built with go-toml's own parser; a
// document that does not parse gives an empty map (decoding reports that error).
func lines(doc []byte) map[string]int {
	out := map[string]int{}
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
			if e.Kind == unstable.ArrayTable {
				i := counts[name]
				counts[name] = i + 1
				table += "[" + strconv.Itoa(i) + "]"
			}
			out[table] = line(&p, e.Key())
		case unstable.KeyValue:
			key := keyName(e.Key())
			if table != "" {
				key = table + "." + key
			}
			out[key] = line(&p, e.Key())
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
	return out
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
