package tasks

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/s3fleet/s3fleet/internal/s3client"
	"github.com/s3fleet/s3fleet/ledger"
)

// objectMeta is what a copy keeps of its source besides the bytes: the
// content headers, the user metadata and the tags (URL-encoded, as the
// x-amz-tagging header takes them; nil for none).
type objectMeta struct {
	contentType, contentEncoding, contentDisposition, cacheControl, contentLanguage *string
	expires                                                                         *time.Time
	metadata                                                                        map[string]string
	tags                                                                            *string
}

func metaOfHead(o *s3.HeadObjectOutput) objectMeta {
	return objectMeta{o.ContentType, o.ContentEncoding, o.ContentDisposition, o.CacheControl, o.ContentLanguage, o.Expires, o.Metadata, nil}
}

func metaOfGet(o *s3.GetObjectOutput) objectMeta {
	return objectMeta{o.ContentType, o.ContentEncoding, o.ContentDisposition, o.CacheControl, o.ContentLanguage, o.Expires, o.Metadata, nil}
}

// writeInput is every S3 request that writes an object whole or begins
// one.
type writeInput interface {
	*s3.CreateMultipartUploadInput | *s3.PutObjectInput | *s3.CopyObjectInput
}

// setWrite sets what the destination object gets: the source's content
// headers, user metadata and tags (m), and the write options w asked for
// (storage class, encryption, metadata over the source's). A CopyObject
// takes m only with MetadataDirective REPLACE (its tags it copies itself).
func setWrite[T writeInput](in T, m objectMeta, w *ledger.Write) {
	md := m.metadata
	var class types.StorageClass
	var sse types.ServerSideEncryption
	var kmsKey *string
	if w != nil {
		if len(w.Metadata) > 0 {
			md = maps.Clone(md)
			if md == nil {
				md = map[string]string{}
			}
			maps.Copy(md, w.Metadata)
		}
		class, sse = types.StorageClass(w.StorageClass), types.ServerSideEncryption(w.SSE)
		if w.SSEKMSKeyID != "" {
			kmsKey = aws.String(w.SSEKMSKeyID)
		}
	}
	switch v := any(in).(type) {
	case *s3.CreateMultipartUploadInput:
		v.ContentType, v.ContentEncoding, v.ContentDisposition, v.CacheControl, v.ContentLanguage = m.contentType, m.contentEncoding, m.contentDisposition, m.cacheControl, m.contentLanguage
		v.Expires, v.Metadata, v.Tagging = m.expires, md, m.tags
		v.StorageClass, v.ServerSideEncryption, v.SSEKMSKeyId = class, sse, kmsKey
	case *s3.PutObjectInput:
		v.ContentType, v.ContentEncoding, v.ContentDisposition, v.CacheControl, v.ContentLanguage = m.contentType, m.contentEncoding, m.contentDisposition, m.cacheControl, m.contentLanguage
		v.Expires, v.Metadata, v.Tagging = m.expires, md, m.tags
		v.StorageClass, v.ServerSideEncryption, v.SSEKMSKeyId = class, sse, kmsKey
	case *s3.CopyObjectInput:
		if v.MetadataDirective == types.MetadataDirectiveReplace {
			v.ContentType, v.ContentEncoding, v.ContentDisposition, v.CacheControl, v.ContentLanguage = m.contentType, m.contentEncoding, m.contentDisposition, m.cacheControl, m.contentLanguage
			v.Expires, v.Metadata = m.expires, md
		}
		v.StorageClass, v.ServerSideEncryption, v.SSEKMSKeyId = class, sse, kmsKey
	}
}

// tagReader is what reading a source's tags needs.
type tagReader interface {
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
}

var _ tagReader = (*s3.Client)(nil)

// sourceTags reads the tags of a copy's source, URL-encoded as the
// x-amz-tagging header takes them (nil when it has none, or its endpoint
// keeps none: NotImplemented). Any other error fails the copy rather than
// lose the tags: AccessDenied needs s3:GetObjectTagging.
func sourceTags(ctx context.Context, api tagReader, o Object) (*string, error) {
	in := &s3.GetObjectTaggingInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)}
	if o.VersionID != "" {
		in.VersionId = aws.String(o.VersionID)
	}
	if o.RequestPayer != "" {
		in.RequestPayer = types.RequestPayer(o.RequestPayer)
	}
	if o.ExpectedOwner != "" {
		in.ExpectedBucketOwner = aws.String(o.ExpectedOwner)
	}
	out, err := api.GetObjectTagging(ctx, in)
	switch {
	case err != nil && (s3client.ErrorCode(err) == "NotImplemented" || s3client.HTTPStatus(err) == http.StatusNotImplemented):
		return nil, nil
	case err != nil:
		return nil, s3Failure("read the tags of "+o.URL()+" (a copy keeps them)", err)
	case len(out.TagSet) == 0:
		return nil, nil
	}
	return aws.String(encodeTags(out.TagSet)), nil
}

// encodeTags renders tags as the x-amz-tagging header takes them: a URL
// query, sorted by key, spaces as %20 (not "+", which some servers keep).
func encodeTags(tags []types.Tag) string {
	parts := make([]string, 0, len(tags))
	for _, t := range tags {
		parts = append(parts, esc(aws.ToString(t.Key))+"="+esc(aws.ToString(t.Value)))
	}
	slices.Sort(parts)
	return strings.Join(parts, "&")
}

func esc(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }
