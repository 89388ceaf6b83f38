// Package s3client builds the S3 client the enqueuer and the workers share:
// the SDK's default credential chain, one HTTP transport sized to the
// concurrency, and the SDK's BuildableClient so that AWS_CA_BUNDLE and the
// other settings LoadDefaultConfig applies keep working.
package s3client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Options configure the client.
type Options struct {
	Endpoint       string // empty: AWS
	Region         string
	PathStyle      bool
	Concurrency    int           // connections kept idle per host
	ConnectTimeout time.Duration // dial and TLS handshake limit
	ReadTimeout    time.Duration // a body that stalls this long fails; 0: none
	// Profile takes the credentials from this AWS profile (the shared
	// config and credentials files) rather than the default chain.
	Profile string
	// Credentials overrides the default chain (env, profile, IMDS); tests
	// use it. Nil in production.
	Credentials aws.CredentialsProvider
	// Pacer, when set, paces every attempt of every request: the fleet's
	// shared rate for a store that answers SlowDown.
	Pacer Pacer
}

// New builds an S3 client.
func New(ctx context.Context, o Options) (*s3.Client, error) {
	hc := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = o.ConnectTimeout
		}).
		WithTransportOptions(func(tr *http.Transport) {
			idle := max(o.Concurrency, 2) * 2
			tr.MaxIdleConns = idle
			tr.MaxIdleConnsPerHost = idle
			tr.TLSHandshakeTimeout = o.ConnectTimeout
			tr.DisableCompression = true // bytes must arrive as stored
			// Bodies bypass the connection's read buffer (the copy reads
			// into its own, larger one), so it only holds headers and the
			// odd small body: a large one is memory held per connection.
			tr.ReadBufferSize = 32 << 10
		}).
		WithReadTimeout(o.ReadTimeout)
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(hc),
		awsconfig.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		// No retry quota: the SDK's would stop retrying after a burst of
		// SlowDowns, a second throttle hidden from the fleet's own (the
		// Pacer), and the tasks retry anyway.
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) { so.RateLimiter = ratelimit.None })
		}),
	}
	if o.Region != "" {
		opts = append(opts, awsconfig.WithRegion(o.Region))
	}
	if o.Profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(o.Profile))
	}
	if o.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		if o.Pacer != nil {
			so.APIOptions = append(so.APIOptions, addPacer(o.Fingerprint(), o.Pacer))
		}
	}), nil
}

// HTTPStatus returns the HTTP status of a failed S3 call, or 0 when no
// response came back.
func HTTPStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// ErrorCode returns S3's error code (NoSuchKey, AccessDenied, …), or "".
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Permanent reports whether a failed S3 call would fail the same way again:
// the object or bucket is missing, access is denied, the source changed, or
// the request is malformed. Throttling, server errors and broken
// connections are worth retrying.
func Permanent(err error) bool {
	switch s := HTTPStatus(err); {
	case s == http.StatusRequestTimeout || s == http.StatusTooManyRequests:
		return false
	case s >= 400 && s < 500:
		return true
	}
	switch ErrorCode(err) {
	case "NoSuchKey", "NoSuchBucket", "AccessDenied", "PreconditionFailed", "InvalidRange", "NoSuchVersion":
		return true
	}
	return false
}

// Describe says in a few words why an S3 call failed, for messages a user
// reads: "not found (404 NoSuchKey)".
func Describe(err error) string {
	status, code := HTTPStatus(err), ErrorCode(err)
	what := ""
	switch status {
	case http.StatusNotFound:
		what = "not found"
	case http.StatusForbidden:
		what = "access denied"
	case http.StatusPreconditionFailed:
		what = "source changed since enqueue"
	case http.StatusRequestedRangeNotSatisfiable:
		what = "range not satisfiable (object shrank?)"
	}
	if code == "InvalidObjectState" {
		// S3's answer to a GET of an object in an archive storage class.
		what = "archived: restore it first (RestoreObject)"
	}
	var oe *net.OpError
	switch {
	case status == 0 && errors.As(err, &oe):
		return "S3 endpoint unreachable: " + oe.Error()
	case status == 0:
		return err.Error()
	case what != "" && code != "":
		return fmt.Sprintf("%s (%d %s)", what, status, code)
	case what != "":
		return fmt.Sprintf("%s (%d)", what, status)
	case code != "":
		return fmt.Sprintf("%s (%d)", code, status)
	}
	return fmt.Sprintf("HTTP %d: %v", status, err)
}

// DescribeSSEC is Describe for a HEAD or GET of an object that may be
// encrypted with a customer key (SSE-C): S3 answers 400 to one sent
// without the key, and 403 to one with another key. withKey says whether
// the request carried a key. ok reports whether the answer was one of
// those.
func DescribeSSEC(err error, withKey bool) (desc string, ok bool) {
	status, code := HTTPStatus(err), ErrorCode(err)
	switch {
	case !withKey && status == http.StatusBadRequest:
		return fmt.Sprintf("encrypted with a customer key (SSE-C): the request needs that key (--sse-c-key-file) (%d %s)", status, code), true
	case withKey && (status == http.StatusForbidden || status == http.StatusBadRequest):
		return fmt.Sprintf("the SSE-C key given is not the object's, or access is denied (%d %s)", status, code), true
	}
	return Describe(err), false
}

// ListedKey is a key of a ListObjectsV2 page asked with EncodingType=url
// (UseURLEncoding): decoded when the page says its keys are encoded, as
// it is otherwise. Encoded pages carry keys XML cannot (control
// characters: without it one such key aborts the whole listing); a server
// that ignores the parameter (versitygw does) sends raw keys, which must
// not be decoded: a % or + in them would change.
func ListedKey(out *s3.ListObjectsV2Output, key *string) (string, error) {
	k := aws.ToString(key)
	if out.EncodingType != types.EncodingTypeUrl {
		return k, nil
	}
	d, err := url.QueryUnescape(k)
	if err != nil {
		return "", fmt.Errorf("listed key %q: bad URL encoding: %w", k, err)
	}
	return d, nil
}
