package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// ErrInvalid is wrapped by every error Load returns for a file it could read.
var ErrInvalid = errors.New("config: invalid configuration")

// Error is one thing wrong with a configuration: where (file and line when known, and
// the key path, e.g. "route[1].groups[0]", or the environment variable) and what.
// It never quotes a secret.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // "" when the error is about the file as a whole
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all the problems Load found, in file order where it could tell.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Is makes errors.Is(err, ErrInvalid) hold.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// Env reads an environment variable; os.Getenv in production, a map in tests.
type Env func(name string) string

// The environment variables Load reads.
const (
	EnvListen       = "CANAL_LISTEN"
	EnvOrigins      = "CANAL_ORIGINS" // comma-separated; replaces origins
	EnvAdminListen  = "CANAL_ADMIN_LISTEN"
	EnvRedisURL     = "CANAL_REDIS_URL"
	EnvLogLevel     = "CANAL_LOG_LEVEL"
	EnvLogFormat    = "CANAL_LOG_FORMAT"
	EnvSessionToken = "CANAL_SESSION_TOKEN"
	EnvDjangoToken  = "CANAL_DJANGO_TOKEN"
	EnvLayerKeys    = "CANAL_LAYER_SYMMETRIC_ENCRYPTION_KEYS"
	EnvJWTKey       = "CANAL_JWT_SIGNING_KEY"
	EnvSigningKey   = "CANAL_SIGNING_KEY"
	EnvSigningOld   = "CANAL_SIGNING_KEY_FALLBACKS"
)

// secretKeys are keys people will try to write in the file; each gets told its
// environment variable instead of "unknown key".
var secretKeys = map[string]string{
	"auth.session.token":                  EnvSessionToken,
	"auth.session.secret":                 EnvSessionToken,
	"django.token":                        EnvDjangoToken,
	"django.secret":                       EnvDjangoToken,
	"layer.symmetric_encryption_keys":     EnvLayerKeys,
	"route.authorize_token":               EnvDjangoToken,
	"route.receive.token":                 EnvDjangoToken,
	"auth.ticket.redis_password":          EnvRedisURL,
	"redis.password":                      EnvRedisURL,
	"layer.symmetric_encryption_key":      EnvLayerKeys,
	"auth.session.realtime_session_token": EnvSessionToken,
	"auth.jwt.signing_key":                EnvJWTKey,
	"auth.jwt.secret_key":                 EnvJWTKey,
	"auth.signed.key":                     EnvSigningKey,
	"auth.signed.secret_key":              EnvSigningKey,
	"auth.signed.fallbacks":               EnvSigningOld,
	"auth.django.token":                   EnvSessionToken,
}

// Load reads, decodes and checks the file at path, with the environment's overrides
// and secrets. A file it cannot read is an *os.PathError; anything wrong with the
// content is an Errors list (errors.Is(err, ErrInvalid)) naming every problem.
func Load(path string, env Env) (*Config, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(filepath.Base(path), doc, env)
}

// Parse is Load for a document in memory; name is used in error messages.
func Parse(name string, doc []byte, env Env) (*Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	at, numbers := lines(doc)
	v := &validator{file: name, lines: at}
	if bareDurations(v, numbers); len(v.errs) > 0 {
		return nil, v.sorted()
	}
	var c Config
	dec := toml.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeErrors(name, err)
	}
	c.applyEnv(env, v)
	c.defaults()
	c.validate(v)
	if len(v.errs) > 0 {
		return nil, v.sorted()
	}
	return &c, nil
}

// sorted returns the errors in file order (those without a line stay in place).
func (v *validator) sorted() Errors {
	slices.SortStableFunc(v.errs, func(a, b *Error) int {
		if a.Line == 0 || b.Line == 0 {
			return 0
		}
		return a.Line - b.Line
	})
	return v.errs
}

func decodeErrors(file string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var es Errors
		for i := range strict.Errors {
			de := &strict.Errors[i]
			line, _ := de.Position()
			key := strings.Join(de.Key(), ".")
			msg := "unknown key"
			if env, ok := secretKeys[stripIndexes(key)]; ok {
				msg = "secrets are not read from the file: set the environment variable " + env
			}
			es = append(es, &Error{File: file, Line: line, Key: key, Msg: msg})
		}
		return es
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		return Errors{{File: file, Line: line, Key: strings.Join(de.Key(), "."), Msg: msg}}
	}
	return Errors{{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}}
}

func stripIndexes(key string) string {
	var b strings.Builder
	skip := false
	for _, r := range key {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// validator collects errors with their lines.
type validator struct {
	file  string
	lines map[string]int
	errs  Errors
}

// errf records an error about key (a path as lines knows it). A key that is not in
// the file (a default, an omitted table) takes the line of its closest written parent.
func (v *validator) errf(key, format string, args ...any) {
	line := 0
	for k := key; k != ""; {
		if l, ok := v.lines[k]; ok {
			line = l
			break
		}
		i := strings.LastIndexAny(k, ".[")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// envErrf records an error about an environment variable's value.
func (v *validator) envErrf(name, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Key: name + " (environment)", Msg: fmt.Sprintf(format, args...)})
}
