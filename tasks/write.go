package tasks

import (
	"context"
	"log/slog"
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
// content headers, the user metadata, the tags (URL-encoded, as the
// x-amz-tagging header takes them; nil for none) and a website redirect.
type objectMeta struct {
	contentType, contentEncoding, contentDisposition, cacheControl, contentLanguage *string
	expires                                                                         *time.Time
	metadata                                                                        map[string]string
	tags, redirect                                                                  *string
}

// equal reports whether two objects' headers (not tags) are the same.
func (m objectMeta) equal(n objectMeta) bool {
	same := func(a, b *string) bool { return aws.ToString(a) == aws.ToString(b) }
	return same(m.contentType, n.contentType) && same(m.contentEncoding, n.contentEncoding) &&
		same(m.contentDisposition, n.contentDisposition) && same(m.cacheControl, n.cacheControl) &&
		same(m.contentLanguage, n.contentLanguage) && same(m.redirect, n.redirect) &&
		aws.ToTime(m.expires).Equal(aws.ToTime(n.expires)) && maps.Equal(m.metadata, n.metadata)
}

func metaOfHead(o *s3.HeadObjectOutput) objectMeta {
	return objectMeta{o.ContentType, o.ContentEncoding, o.ContentDisposition, o.CacheControl, o.ContentLanguage, o.Expires, o.Metadata, nil, o.WebsiteRedirectLocation}
}

func metaOfGet(o *s3.GetObjectOutput) objectMeta {
	return objectMeta{o.ContentType, o.ContentEncoding, o.ContentDisposition, o.CacheControl, o.ContentLanguage, o.Expires, o.Metadata, nil, o.WebsiteRedirectLocation}
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
		v.Expires, v.Metadata, v.Tagging, v.WebsiteRedirectLocation = m.expires, md, m.tags, m.redirect
		v.StorageClass, v.ServerSideEncryption, v.SSEKMSKeyId = class, sse, kmsKey
	case *s3.PutObjectInput:
		v.ContentType, v.ContentEncoding, v.ContentDisposition, v.CacheControl, v.ContentLanguage = m.contentType, m.contentEncoding, m.contentDisposition, m.cacheControl, m.contentLanguage
		v.Expires, v.Metadata, v.Tagging, v.WebsiteRedirectLocation = m.expires, md, m.tags, m.redirect
		v.StorageClass, v.ServerSideEncryption, v.SSEKMSKeyId = class, sse, kmsKey
	case *s3.CopyObjectInput:
		if v.MetadataDirective == types.MetadataDirectiveReplace {
			v.ContentType, v.ContentEncoding, v.ContentDisposition, v.CacheControl, v.ContentLanguage = m.contentType, m.contentEncoding, m.contentDisposition, m.cacheControl, m.contentLanguage
			v.Expires, v.Metadata, v.WebsiteRedirectLocation = m.expires, md, m.redirect
		}
		v.StorageClass, v.ServerSideEncryption, v.SSEKMSKeyId = class, sse, kmsKey
	}
}

// tagReader is what reading a source's tags needs.
type tagReader interface {
	GetObjectTagging(ctx context.Context, in *s3.GetObjectTaggingInput, optFns ...func(*s3.Options)) (*s3.GetObjectTaggingOutput, error)
}

var _ tagReader = (*s3.Client)(nil)

// sourceTags reads the tags of a copy's source, of the version the copy
// read (versionID, when the source is versioned), URL-encoded as the
// x-amz-tagging header takes them. None when it has none, when its
// endpoint keeps none (NotImplemented), or when the credentials may not
// read them (403: s3:GetObjectTagging, or GetObjectVersionTagging): the
// copy goes on without them, with a warning, as it did before it kept
// tags. Any other error fails the attempt.
func sourceTags(ctx context.Context, api tagReader, o Object, versionID string, log *slog.Logger) (*string, error) {
	in := &s3.GetObjectTaggingInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)}
	if versionID == "" {
		versionID = o.VersionID
	}
	if versionID != "" && versionID != "null" {
		in.VersionId = aws.String(versionID)
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
	case s3client.HTTPStatus(err) == http.StatusForbidden:
		if log != nil {
			log.Warn("copied without its tags: these credentials may not read them (s3:GetObjectTagging)", "source", o.URL(), "err", s3client.Describe(err))
		}
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

// writtenAs reports whether an object, as a HEAD describes it, has the
// storage class and encryption w asks for (S3 names no class for
// STANDARD): an object with this copy's bytes is its own, its response
// lost, only if so.
func writtenAs(out *s3.HeadObjectOutput, w *ledger.Write) bool {
	if w == nil || w.StorageClass == "" && w.SSE == "" {
		return true
	}
	class := string(out.StorageClass)
	if class == "" {
		class = string(types.StorageClassStandard)
	}
	return (w.StorageClass == "" || class == w.StorageClass) &&
		(w.SSE == "" || string(out.ServerSideEncryption) == w.SSE) &&
		(w.SSEKMSKeyID == "" || aws.ToString(out.SSEKMSKeyId) == w.SSEKMSKeyID || strings.HasSuffix(aws.ToString(out.SSEKMSKeyId), "/"+w.SSEKMSKeyID))
}
