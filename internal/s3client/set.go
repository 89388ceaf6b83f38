package s3client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// ErrRemote reports a task naming a remote this process does not have, or
// one whose endpoint differs from the enqueuer's (another fingerprint).
var ErrRemote = errors.New("remote refused")

// Fingerprint identifies an endpoint as tasks carry it: each worker
// resolves a remote's name from its own configuration and refuses a task
// whose fingerprint differs, so that one name meaning two stores on two
// hosts never copies to the wrong one.
func (o Options) Fingerprint() string {
	h := sha256.Sum256([]byte(o.Endpoint + "\x00" + o.Region + "\x00" + strconv.FormatBool(o.PathStyle)))
	return hex.EncodeToString(h[:6])
}

// Set is the S3 endpoints one process knows by name: the top-level one
// (named "") and the remotes of its configuration. Each client is built
// on first use and then shared.
type Set struct {
	opts    map[string]Options
	mu      sync.Mutex
	clients map[string]*s3.Client
}

// NewSet returns the set of the top-level endpoint and the remotes.
func NewSet(top Options, remotes map[string]Options) *Set {
	s := &Set{opts: map[string]Options{"": top}, clients: map[string]*s3.Client{}}
	for name, o := range remotes {
		s.opts[name] = o
	}
	return s
}

// Names are the remotes' names, sorted (the top-level endpoint's, "",
// left out).
func (s *Set) Names() []string {
	var names []string
	for n := range s.opts {
		if n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Fingerprint is the named endpoint's fingerprint.
func (s *Set) Fingerprint(name string) (string, error) {
	o, ok := s.opts[name]
	if !ok {
		return "", s.unknown(name)
	}
	return o.Fingerprint(), nil
}

// Client returns the named endpoint's client. A non-empty fingerprint
// must be this process's own for that name.
func (s *Set) Client(ctx context.Context, name, fingerprint string) (*s3.Client, error) {
	o, ok := s.opts[name]
	if !ok {
		return nil, s.unknown(name)
	}
	if fingerprint != "" && fingerprint != o.Fingerprint() {
		return nil, fmt.Errorf("%w: %s means another endpoint or region here: the task's fingerprint is %s, this worker's is %s",
			ErrRemote, display(name), fingerprint, o.Fingerprint())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[name]; ok {
		return c, nil
	}
	c, err := New(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", display(name), err)
	}
	s.clients[name] = c
	return c, nil
}

func (s *Set) unknown(name string) error {
	return fmt.Errorf("%w: %s is not configured on this worker (its remotes: %v)", ErrRemote, display(name), s.Names())
}

func display(name string) string {
	if name == "" {
		return "the top-level endpoint"
	}
	return "remote " + strconv.Quote(name)
}

// Secure reports whether the named endpoint is reached over TLS (AWS,
// when no endpoint is set, always is).
func (s *Set) Secure(name string) bool {
	o, ok := s.opts[name]
	return ok && (o.Endpoint == "" || strings.HasPrefix(o.Endpoint, "https://"))
}
