package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tomlBlock is a ```toml fenced block of a Markdown file.
var tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")

// Every canal.toml the top-level README shows passes `canal check` as written, with
// no environment: what a reader copies works.
func TestReadmeConfigs(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := tomlBlock.FindAllSubmatchIndex(readme, -1)
	if len(blocks) == 0 {
		t.Fatal("no ```toml block in README.md")
	}
	dir := t.TempDir()
	for i, b := range blocks {
		line := 1 + bytes.Count(readme[:b[2]], []byte("\n"))
		path := filepath.Join(dir, "readme.toml")
		if err := os.WriteFile(path, readme[b[2]:b[3]], 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		code := run([]string{"check", "-config", path}, func(string) string { return "" }, &out, &errb)
		if code != exitOK || !strings.HasPrefix(out.String(), path+": ok (") {
			t.Errorf("README.md block %d (line %d): canal check exit %d:\n%s%s", i, line, code, out.String(), errb.String())
		}
	}
}
