package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/canal-rt/canal/cmd/canal/internal/app"
	"github.com/canal-rt/canal/cmd/canal/internal/config"
)

// version is set by the release build (-ldflags "-X main.version=v1.2.3"); otherwise
// the module version go install recorded.
var version = ""

// Exit codes.
const (
	exitOK      = 0
	exitInvalid = 1 // bad configuration, or the server failed
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage:
  canal serve [-config FILE]   serve until SIGTERM or SIGINT (FILE: $CANAL_CONFIG, else canal.toml)
  canal check [-config FILE]   check a configuration; exit 0 if valid, 1 if not
  canal --version
`

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "--version", "-version", "version":
		fmt.Fprintln(stdout, "canal", versionString())
		return exitOK
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "serve", "check":
	default:
		fmt.Fprintf(stderr, "canal: unknown command %q\n%s", args[0], usage)
		return exitUsage
	}
	fs := flag.NewFlagSet("canal "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := getenv("CANAL_CONFIG")
	if def == "" {
		def = "canal.toml"
	}
	path := fs.String("config", def, "configuration file")
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "canal %s: unexpected argument %q\n", args[0], fs.Arg(0))
		return exitUsage
	}
	cfg, err := config.Load(*path, getenv)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			fmt.Fprintf(stderr, "canal: cannot read the configuration: %v\n", err)
		} else {
			fmt.Fprintln(stderr, err)
		}
		return exitInvalid
	}
	if args[0] == "check" {
		fmt.Fprintf(stdout, "%s: ok (%d routes, %d bus inputs, layer %s)\n", *path, len(cfg.Routes), len(cfg.Bus), cfg.Layer.Backend)
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, stderr); err != nil {
		fmt.Fprintf(stderr, "canal: %v\n", err)
		return exitInvalid
	}
	return exitOK
}

func serve(ctx context.Context, cfg *config.Config, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		a.Close()
		return err
	}
	var admin net.Listener
	if cfg.Admin.Listen != "" {
		if admin, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			ln.Close()
			a.Close()
			return err
		}
		log.Info("canal: admin listening", "addr", admin.Addr().String())
	}
	return a.Serve(ctx, ln, admin)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // checked by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
