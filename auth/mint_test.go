package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/canal-rt/canal"
	"github.com/canal-rt/canal/auth"
)

// These tests verify credentials minted by the real Django packages (testdata/mint.py):
// Debian's Django 3.2 with djangorestframework-simplejwt and PyJWT, and, when
// scripts/debian-django.sh has unpacked them, Django 4.2 (trixie) and 5.2 (sid) for
// django.core.signing. Each case carries Django's own verdict, which must match ours.

// mintPython is Debian's interpreter, which has Django, DRF, simplejwt and PyJWT
// (python3 on PATH may be another one).
const mintPython = "/usr/bin/python3"

// mintTimeout bounds one run of mint.py (about a second; a loaded machine is slower).
const mintTimeout = 2 * time.Minute

type mintSuite struct {
	name       string
	pythonPath string // "" for the system's packages
	jwt        bool   // simplejwt is importable: only with the system's Django
}

// mintSuites returns the system's Django and the newer ones unpacked in
// CANAL_DEBIAN_CACHE (../.cache/debian by default), as the layers interop test does.
// A missing newer suite is an error when CANAL_REQUIRE_DEBIAN_SUITES=1 (scripts/test.sh
// sets it), else a log line: the system's run still tests everything.
func mintSuites(t *testing.T) []mintSuite {
	t.Helper()
	if _, err := os.Stat(mintPython); err != nil {
		t.Fatalf("%s not found: install Debian's python3-django, python3-djangorestframework-simplejwt, python3-jwt and python3-cryptography (scripts/test.sh does)", mintPython)
	}
	suites := []mintSuite{{name: "bookworm", jwt: true}}
	cache := os.Getenv("CANAL_DEBIAN_CACHE")
	if cache == "" {
		cache = filepath.Join("..", ".cache", "debian")
	}
	for _, s := range []string{"trixie", "sid"} {
		p := filepath.Join(cache, s, "root", "usr", "lib", "python3", "dist-packages")
		if _, err := os.Stat(filepath.Join(p, "django", "core", "signing.py")); err == nil {
			abs, _ := filepath.Abs(p)
			suites = append(suites, mintSuite{name: s, pythonPath: abs})
		} else if os.Getenv("CANAL_REQUIRE_DEBIAN_SUITES") == "1" {
			t.Fatalf("Django from Debian %s not found in %s: run scripts/debian-django.sh %s", s, cache, s)
		} else {
			t.Logf("Debian %s's Django is not unpacked in %s: testing without it (scripts/debian-django.sh %s adds it)", s, cache, s)
		}
	}
	return suites
}

type mintCase struct {
	Name   string          `json:"name"`
	Token  string          `json:"token"`
	Opts   json.RawMessage `json:"opts"`
	Django *bool           `json:"django"` // nil: this Django cannot tell
}

type minted struct {
	Django  string     `json:"django"`
	Signing []mintCase `json:"signing"`
	JWT     []mintCase `json:"jwt"`
	UserPK  int        `json:"user_pk"`
}

var (
	mintMu   sync.Mutex
	mintRuns = map[string]func() (minted, error){}
)

// mint runs testdata/mint.py once per suite for the whole test binary.
func mint(t *testing.T, s mintSuite) minted {
	t.Helper()
	mintMu.Lock()
	run, ok := mintRuns[s.name]
	if !ok {
		run = sync.OnceValues(func() (minted, error) { return runMint(s) })
		mintRuns[s.name] = run
	}
	mintMu.Unlock()
	m, err := run()
	if err != nil {
		t.Fatalf("Django %s: %v", s.name, err)
	}
	return m
}

func runMint(s mintSuite) (minted, error) {
	ctx, cancel := context.WithTimeout(context.Background(), mintTimeout)
	defer cancel()
	mode := "signing"
	if s.jwt {
		mode = "all"
	}
	cmd := exec.CommandContext(ctx, mintPython, filepath.Join("testdata", "mint.py"), mode)
	cmd.Env = os.Environ()
	if s.pythonPath != "" {
		cmd.Env = append(cmd.Env, "PYTHONPATH="+s.pythonPath)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return minted{}, &mintError{err: err, stderr: stderr.String()}
	}
	var m minted
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		return minted{}, &mintError{err: err, stderr: stderr.String()}
	}
	return m, nil
}

type mintError struct {
	err    error
	stderr string
}

func (e *mintError) Error() string {
	return "testdata/mint.py: " + e.err.Error() + "; stderr:\n" + e.stderr
}

// verdict is what a case must give: refused, or this user.
type verdict struct {
	accept bool
	user   canal.User // ID and Username compared; Attrs by check
	check  func(u canal.User) bool
}

func refused() verdict { return verdict{} }

func accepted(id, username string, check func(canal.User) bool) verdict {
	return verdict{accept: true, user: canal.User{ID: id, Username: username}, check: check}
}

// aliceClaims checks the claims mint.py gives its user on top of id and username.
func aliceClaims(groups ...string) func(canal.User) bool {
	return func(u canal.User) bool {
		return u.Bool("is_staff") && slices.Equal(u.Strings("groups"), groups)
	}
}

var signingVerdicts = map[string]verdict{
	"dumps":                          accepted("42", "alice", aliceClaims("editors", "staff")),
	"dumps tampered":                 refused(),
	"dumps compressed":               accepted("42", "alice", func(u canal.User) bool { return len(u.Strings("groups")) == 60 }),
	"dumps compress small":           accepted("42", "alice", aliceClaims("editors", "staff")),
	"dumps of an id":                 accepted("42", "", nil),
	"salt mismatch":                  refused(),
	"default salt":                   accepted("42", "alice", aliceClaims("editors", "staff")),
	"expired":                        refused(),
	"expired, any age":               accepted("42", "alice", nil),
	"fallback key":                   accepted("42", "alice", aliceClaims("editors", "staff")),
	"rotated key without fallback":   refused(),
	"TimestampSigner.sign":           accepted("42", "", nil),
	"TimestampSigner default salt":   accepted("7", "", nil),
	"Signer.sign":                    accepted("42", "", nil),
	"Signer.sign as TimestampSigner": refused(),
	"sha1":                           accepted("42", "alice", aliceClaims("editors", "staff")),
	"sep":                            accepted("42", "alice", aliceClaims("editors", "staff")),
}

// jwtVerdicts: "pk" stands for the primary key of mint.py's user.
var jwtVerdicts = map[string]verdict{
	"access":                     accepted("pk", "alice", aliceClaims("editors")),
	"access tampered":            refused(),
	"refresh":                    refused(),
	"sliding":                    refused(),
	"sliding accepted":           accepted("pk", "", nil),
	"expired":                    refused(),
	"expired within leeway":      accepted("pk", "alice", nil),
	"issued in the future":       refused(),
	"other secret":               refused(),
	"uuid user id":               accepted("3f1c2b9e-4d5a-4c6b-8e7f-0a1b2c3d4e5f", "alice", nil),
	"audience and issuer":        accepted("pk", "alice", aliceClaims("editors")),
	"other audience":             refused(),
	"RS256":                      accepted("pk", "alice", aliceClaims("editors")),
	"RS256 to an HS256 verifier": refused(),
	"ES256":                      accepted("pk", "alice", aliceClaims("editors")),
	"EdDSA":                      accepted("pk", "alice", aliceClaims("editors")),
}

// checkCases runs every minted case through the verifier its options build.
func checkCases[O any](t *testing.T, cases []mintCase, want map[string]verdict, pk int, build func(O) (auth.Verifier, error)) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			w, ok := want[c.Name]
			if !ok {
				t.Fatalf("mint.py made case %q that the test does not know", c.Name)
			}
			var opts O
			dec := json.NewDecoder(bytes.NewReader(c.Opts))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&opts); err != nil {
				t.Fatalf("options %s: %v", c.Opts, err)
			}
			v, err := build(opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.Django != nil && *c.Django != w.accept {
				t.Fatalf("Django's verdict is %v; the test expects %v", *c.Django, w.accept)
			}
			u, err := v(context.Background(), c.Token)
			if !w.accept {
				checkRefused(t, c.Token, u, err)
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("refused a token Django accepts: %v", err)
			}
			wantID := w.user.ID
			if wantID == "pk" {
				wantID = strconv.Itoa(pk)
			}
			if u.ID != wantID || u.Username != w.user.Username {
				t.Fatalf("got user %q %q; want %q %q", u.ID, u.Username, wantID, w.user.Username)
			}
			if w.check != nil && !w.check(u) {
				t.Fatalf("claims %v are not what mint.py put in", u.Attrs)
			}
		})
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("mint.py made no case %q", name)
		}
	}
}

func TestMintedSigned(t *testing.T) {
	t.Parallel()
	for _, s := range mintSuites(t) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			m := mint(t, s)
			t.Logf("Django %s", m.Django)
			checkCases(t, m.Signing, signingVerdicts, m.UserPK, auth.Signed)
		})
	}
}

func TestMintedSimpleJWT(t *testing.T) {
	t.Parallel()
	s := mintSuites(t)[0] // simplejwt comes with the system's Django only
	m := mint(t, s)
	t.Logf("Django %s", m.Django)
	checkCases(t, m.JWT, jwtVerdicts, m.UserPK, auth.SimpleJWT)
}
