package canal_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// readmePrelude is what the README's Go snippets take for granted: the imports, and
// the handlers and values a snippet uses without declaring. Each statement snippet
// runs in its own function, so one that declares a name shadows these.
const readmePrelude = `package readme

import (
	"context"
	"encoding/json"
	"log"
	"os"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/redis/rueidis"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
	"github.com/canal-rt/canal/consumer"
	"github.com/canal-rt/canal/layers"
	"github.com/canal-rt/canal/metrics"
	"github.com/canal-rt/canal/middleware"
	"github.com/canal-rt/canal/presence"
	"github.com/canal-rt/canal/router"
	"github.com/canal-rt/canal/server"
	"github.com/canal-rt/canal/ticket"
	"github.com/canal-rt/canal/worker"
)

var (
	ctx                        = context.Background()
	chat, profile, files, jobs canal.Handler
	origin, tickets            canal.Middleware
	routes                     canal.Handler
)

var (
	_ = json.Marshal
	_ = log.Fatal
	_ = os.Getenv
	_ = fiber.New
	_ = rueidis.NewClient
	_ = auth.Django
	_ = consumer.New[struct{}]
	_ = layers.NewMemory
	_ = middleware.Origin
	_ = router.New
	_ = server.New
	_ = ticket.NewRedis
	_ = worker.New
	_ = metrics.New
	_ = adaptor.HTTPHandler
	_ = presence.NewMemory
	_ = time.Second
)
`

var goFence = regexp.MustCompile("(?ms)^```go\n(.*?)^```")

// TestReadmeSnippetsCompile type-checks every Go snippet of README.md against the
// current API, so the README cannot drift from the code. Snippets are declarations
// (kept as they are), statements (wrapped in a function) or the fields of a
// consumer.Options literal.
func TestReadmeSnippetsCompile(t *testing.T) {
	t.Parallel()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := goFence.FindAllSubmatch(readme, -1)
	if len(blocks) < 5 {
		t.Fatalf("found %d Go snippets in README.md; the fence pattern no longer matches", len(blocks))
	}
	var src strings.Builder
	src.WriteString(readmePrelude)
	for i, b := range blocks {
		code, err := wrapSnippet(string(b[1]))
		if err != nil {
			t.Fatalf("README snippet %d does not parse as declarations, statements or Options fields: %v\n%s", i+1, err, b[1])
		}
		fmt.Fprintf(&src, "\n// README snippet %d\n%s\n", i+1, code)
	}
	// A directory starting with "." inside the module: imports resolve through the
	// module's go.mod, and "./..." patterns skip it.
	dir, err := os.MkdirTemp(".", ".readme-check-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "readme.go"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goTool, "vet", "./"+filepath.Base(dir))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("README's Go snippets do not compile: %v\n%s\n--- generated source ---\n%s", err, out.String(), numbered(src.String()))
	}
}

// wrapSnippet returns the snippet as Go declarations.
func wrapSnippet(code string) (string, error) {
	fset := token.NewFileSet()
	if _, err := parser.ParseFile(fset, "", "package p\n"+code, 0); err == nil {
		return code, nil
	}
	body := "func _() {\n" + code + "\n}"
	f, err := parser.ParseFile(fset, "", "package p\n"+body, 0)
	if err != nil {
		fields := "var _ = consumer.Options[*Chat]{\n" + code + "\n}"
		if _, ferr := parser.ParseFile(fset, "", "package p\n"+fields, 0); ferr != nil {
			return "", err
		}
		return fields, nil
	}
	// Statements may declare names the snippet never uses; mark them used.
	var uses strings.Builder
	for _, st := range f.Decls[0].(*ast.FuncDecl).Body.List {
		as, ok := st.(*ast.AssignStmt)
		if !ok || as.Tok != token.DEFINE {
			continue
		}
		for _, lhs := range as.Lhs {
			if id, ok := lhs.(*ast.Ident); ok && id.Name != "_" {
				fmt.Fprintf(&uses, "\t_ = %s\n", id.Name)
			}
		}
	}
	return "func _() {\n" + code + "\n" + uses.String() + "}", nil
}

func numbered(s string) string {
	var b strings.Builder
	for i, line := range strings.Split(s, "\n") {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, line)
	}
	return b.String()
}
