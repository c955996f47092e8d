package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/canal-rt/canal/auth"
)

// secretKey stands for Django's settings.SECRET_KEY: read it from the environment or
// a secrets file, never from source.
const secretKey = "django-insecure-example-key"

// A djangorestframework-simplejwt access token, as TokenObtainPairView hands it out
// with SIMPLE_JWT's defaults (HS256 with SECRET_KEY), checked without a database.
func ExampleSimpleJWT() {
	verify, err := auth.SimpleJWT(auth.JWTOptions{
		SigningKey: secretKey, // SIMPLE_JWT["SIGNING_KEY"], by default SECRET_KEY
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	u, err := verify(ctx, tokenFromSimpleJWT("access"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.ID, u.Username, u.Bool("is_staff"), u.Strings("groups"))

	// Refresh tokens open no socket.
	_, err = verify(ctx, tokenFromSimpleJWT("refresh"))
	fmt.Println(err)
	// Output:
	// 42 alice true [editors]
	// auth: invalid credential: simplejwt token is of type "refresh"; want access
}

// With a key pair (SIMPLE_JWT["ALGORITHM"] = "RS256"), the verifier needs only the
// public VERIFYING_KEY; the private SIGNING_KEY stays with Django.
func ExampleSimpleJWT_rs256() {
	pub, err := os.ReadFile("/etc/django/jwt-public.pem")
	if err != nil {
		log.Fatal(err)
	}
	verify, err := auth.SimpleJWT(auth.JWTOptions{
		Algorithm:    "RS256",
		VerifyingKey: string(pub),
		Audience:     "canal", // SIMPLE_JWT["AUDIENCE"], if set
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = verify // give it to the authentication middleware
}

// A token made with django.core.signing in a Django view:
//
//	token = signing.dumps(
//	    {"user_id": request.user.pk, "username": request.user.username,
//	     "is_staff": request.user.is_staff},
//	    salt="canal.ws",
//	)
//
// checked with the same salt, and no older than a minute.
func ExampleSigned() {
	verify, err := auth.Signed(auth.SignedOptions{
		Key:    secretKey,
		Salt:   "canal.ws",
		MaxAge: time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	token := tokenFromSigningDumps(map[string]any{"user_id": 42, "username": "alice", "is_staff": true}, "canal.ws")
	u, err := verify(ctx, token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.ID, u.Username, u.Bool("is_staff"))

	// Another salt (another use of signing) is another key.
	_, err = verify(ctx, tokenFromSigningDumps(map[string]any{"user_id": 42}, "password-reset"))
	fmt.Println(errors.Is(err, auth.ErrInvalid))
	// Output:
	// 42 alice true
	// true
}

// After rotating SECRET_KEY with SECRET_KEY_FALLBACKS (Django 4.1+), give the verifier
// the same fallbacks; a policy with no age limit must say so.
func ExampleSigned_fallbacks() {
	_, err := auth.Signed(auth.SignedOptions{Key: "new-key", Fallbacks: []string{secretKey}})
	fmt.Println(err)
	// Output:
	// auth: SignedOptions.MaxAge is 0: set the max_age your Django code would pass to loads, or NoMaxAge to accept tokens of any age
}

// tokenFromSimpleJWT makes what simplejwt makes for user 42 with a get_token override
// adding username, is_staff and groups.
func tokenFromSimpleJWT(typ string) string {
	now := time.Now()
	t, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"token_type": typ, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix(),
		"jti": "9d7c1f3e8b2a4c6d", "user_id": 42,
		"username": "alice", "is_staff": true, "groups": []string{"editors"},
	}).SignedString([]byte(secretKey))
	if err != nil {
		panic(err)
	}
	return t
}

// tokenFromSigningDumps makes what signing.dumps(obj, salt=salt) makes.
func tokenFromSigningDumps(obj any, salt string) string {
	return auth.DjangoDumps(auth.SignedOptions{Key: secretKey, Salt: salt, NoMaxAge: true}, obj, false, time.Now())
}
