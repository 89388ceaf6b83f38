package s3client

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// Pacer paces the requests to a store that throttles them: Wait before
// each attempt (retries included), Done after it, with whether the store
// throttled it. A scope names an endpoint, a bucket and a key's first
// path segment: S3 throttles per prefix.
type Pacer interface {
	Wait(ctx context.Context, scope string) error
	Done(scope string, throttled bool)
}

// Throttled reports an error by which the store asks for fewer requests:
// 503 (S3's SlowDown, MinIO's SlowDownRead/Write), 429, or one of the
// throttling codes the SDK knows.
func Throttled(err error) bool {
	if err == nil {
		return false
	}
	if s := HTTPStatus(err); s == http.StatusServiceUnavailable || s == http.StatusTooManyRequests {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && strings.HasPrefix(ae.ErrorCode(), "SlowDown") {
		return true
	}
	return retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}.IsErrorThrottle(err) == aws.TrueTernary
}

// scopeKey is the stack value holding a request's scope.
type scopeKey struct{}

// scope names a request's scope: the endpoint, the bucket and the key's
// (or the listing prefix's) first path segment, none for a key at the
// bucket's top.
func scope(endpoint, bucket, key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		key = key[:i+1]
	} else {
		key = ""
	}
	return endpoint + "/" + bucket + "/" + key
}

// stringField reads an input's *string field by name ("" when absent):
// the SDK's inputs share no interface for their bucket and key.
func stringField(v reflect.Value, name string) string {
	f := v.FieldByName(name)
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() || f.Elem().Kind() != reflect.String {
		return ""
	}
	return f.Elem().String()
}

// addPacer paces every attempt of every request through p: the scope
// is read from the input, the wait and the verdict sit right after the
// retry middleware, so each attempt waits and each answer counts.
func addPacer(endpoint string, p Pacer) func(*middleware.Stack) error {
	return func(s *middleware.Stack) error {
		name := middleware.InitializeMiddlewareFunc("s3fleetPaceScope", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			v := reflect.ValueOf(in.Parameters)
			if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
				v = v.Elem()
				key := stringField(v, "Key")
				if key == "" {
					key = stringField(v, "Prefix")
				}
				ctx = middleware.WithStackValue(ctx, scopeKey{}, scope(endpoint, stringField(v, "Bucket"), key))
			}
			return next.HandleInitialize(ctx, in)
		})
		pace := middleware.FinalizeMiddlewareFunc("s3fleetPace", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			sc, ok := middleware.GetStackValue(ctx, scopeKey{}).(string)
			if !ok {
				return next.HandleFinalize(ctx, in)
			}
			if err := p.Wait(ctx, sc); err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, err
			}
			out, md, err := next.HandleFinalize(ctx, in)
			p.Done(sc, Throttled(err))
			return out, md, err
		})
		if err := s.Initialize.Add(name, middleware.After); err != nil {
			return err
		}
		if err := s.Finalize.Insert(pace, (&retry.Attempt{}).ID(), middleware.After); err != nil {
			return s.Finalize.Add(pace, middleware.After)
		}
		return nil
	}
}
