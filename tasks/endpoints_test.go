package tasks

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// oneEndpoint is an endpoint set of one client, over TLS or not.
type oneEndpoint struct {
	c      *s3.Client
	secure bool
}

func (o oneEndpoint) Client(context.Context, string, string) (*s3.Client, error) { return o.c, nil }
func (o oneEndpoint) Secure(string) bool                                         { return o.secure }

// TestDestClientSSEC: a destination written with an SSE-C key gets a
// client that sends it, over HTTPS only, and the same one each time; a
// worker without the key refuses.
func TestDestClientSSEC(t *testing.T) {
	key := make([]byte, 32)
	sum := md5.Sum(key)
	keyMD5 := base64.StdEncoding.EncodeToString(sum[:])
	keys := map[string][]byte{keyMD5: key}
	base := s3.New(s3.Options{Region: "us-east-1"})
	ctx := context.Background()
	if c, err := destClient(ctx, oneEndpoint{base, false}, "", "", "", keys); err != nil || c != base {
		t.Fatalf("no key: %v, %v; want the endpoint's own client", c, err)
	}
	if _, err := destClient(ctx, oneEndpoint{base, false}, "", "", keyMD5, keys); err == nil || !strings.Contains(err.Error(), "HTTPS only") {
		t.Errorf("plain HTTP: %v, want a refusal", err)
	}
	if _, err := destClient(ctx, oneEndpoint{base, true}, "", "", "bm9rZXk=", keys); err == nil || !strings.Contains(err.Error(), "no SSE-C key") {
		t.Errorf("an unknown key: %v, want a refusal", err)
	}
	a, err := destClient(ctx, oneEndpoint{base, true}, "", "", keyMD5, keys)
	if err != nil || a == base {
		t.Fatalf("HTTPS: %v, %v; want a client of its own", a, err)
	}
	if b, _ := destClient(ctx, oneEndpoint{base, true}, "", "", keyMD5, keys); b != a {
		t.Error("a second task got another client: one per endpoint and key is kept")
	}
}
