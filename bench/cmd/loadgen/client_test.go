package main

import "testing"

func TestIntField(t *testing.T) {
	for _, tc := range []struct {
		frame string
		key   string
		want  int64
		ok    bool
	}{
		{`{"type":"group","seq":12,"ts":1796450831930369705,"text":"x"}`, "ts", 1796450831930369705, true},
		{`{"seq": 3, "ts": 5}`, "seq", 3, true},                         // Python's spacing
		{`{"text":"x","seq":-4}`, "seq", -4, true},                      // last field
		{`{"seq":7,"text":"x","type":"bench.message"}`, "seq", 7, true}, // the binary's frame
		{`{"ts":1.796450831930369e+18}`, "ts", 0, false},                // a float is not a time stamp
		{`{"seq":"3"}`, "seq", 0, false},
		{`{"other":1}`, "seq", 0, false},
	} {
		got, ok := intField([]byte(tc.frame), tc.key)
		if got != tc.want || ok != tc.ok {
			t.Errorf("intField(%s, %q) = %d, %v; want %d, %v", tc.frame, tc.key, got, ok, tc.want, tc.ok)
		}
	}
}

func TestContracts(t *testing.T) {
	for _, tc := range []struct {
		name, frame string
		group       bool
	}{
		{"bench", `{"type":"group","seq":1,"ts":2,"text":""}`, true},
		{"bench", `{"seq":1,"text":"","ts":2,"type":"bench.message"}`, false},
		{"binary", `{"seq":1,"text":"","ts":2,"type":"bench.message"}`, true},
		{"binary", `{"type":"group","seq":1,"ts":2,"text":""}`, false},
		{"binary", `{"type":"hello","user":"u"}`, false},
	} {
		c, err := parseContract(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := typeIs([]byte(tc.frame), c.groupType); got != tc.group {
			t.Errorf("contract %s, %s: a group frame %v, want %v", tc.name, tc.frame, got, tc.group)
		}
	}
	if b, _ := parseContract("bench"); !b.greeting || !b.echo {
		t.Errorf("contract bench %+v: want a greeting and an echo", b)
	}
	if b, _ := parseContract("binary"); b.greeting || b.echo {
		t.Errorf("contract binary %+v: want no greeting and no echo", b)
	}
	if _, err := parseContract("other"); err == nil {
		t.Error("parseContract(other): no error")
	}
}
