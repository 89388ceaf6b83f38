package ledger

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Write is what a copy to S3 sets on its destination object besides what
// it keeps of its source (content headers, user metadata, tags): the
// storage class, the server-side encryption, and user metadata added to
// the source's (a key of both takes this value). The zero Write sets
// nothing. It is recorded with the transfer (Encode) and travels in its
// tasks' payloads, so a retried object is written as it was asked.
type Write struct {
	StorageClass string            `json:"storage_class,omitempty"`
	SSE          string            `json:"sse,omitempty"` // AES256, aws:kms or aws:kms:dsse
	SSEKMSKeyID  string            `json:"sse_kms_key_id,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// IsZero reports whether w sets nothing.
func (w Write) IsZero() bool {
	return w.StorageClass == "" && w.SSE == "" && w.SSEKMSKeyID == "" && len(w.Metadata) == 0
}

// storageClasses are those a PUT or a copy may ask for (the SDK's list
// also has classes of Outposts, Snow, FSx, Backup and directory buckets).
var storageClasses = []types.StorageClass{
	types.StorageClassStandard, types.StorageClassReducedRedundancy, types.StorageClassStandardIa,
	types.StorageClassOnezoneIa, types.StorageClassIntelligentTiering, types.StorageClassGlacier,
	types.StorageClassDeepArchive, types.StorageClassGlacierIr,
}

// encryptions are the server-side encryptions a write may ask for.
var encryptions = []types.ServerSideEncryption{
	types.ServerSideEncryptionAes256, types.ServerSideEncryptionAwsKms, types.ServerSideEncryptionAwsKmsDsse,
}

// ReservedMetadata is the user metadata key an upload keeps its file's
// mtime under (and --sync compares): --metadata may not set it.
const ReservedMetadata = "mtime"

// Flags names the options w sets, as the command line gives them.
func (w Write) Flags() string {
	var f []string
	for _, o := range []struct {
		set  bool
		name string
	}{{w.StorageClass != "", "--storage-class"}, {w.SSE != "", "--sse"}, {w.SSEKMSKeyID != "", "--sse-kms-key-id"}, {len(w.Metadata) > 0, "--metadata"}} {
		if o.set {
			f = append(f, o.name)
		}
	}
	return strings.Join(f, ", ")
}

// maxUserMetadata is S3's bound on an object's user metadata: the keys
// and values of its x-amz-meta-* headers together.
const maxUserMetadata = 2 << 10

// Validate refuses what S3 would refuse, naming the option: an unknown
// storage class or encryption, a KMS key without aws:kms, and metadata
// keys or values that cannot be HTTP headers.
func (w Write) Validate() error {
	if w.StorageClass != "" && !slices.Contains(storageClasses, types.StorageClass(w.StorageClass)) {
		return fmt.Errorf("--storage-class %q: not a storage class an object can be written in (%s)", w.StorageClass, joinValues(storageClasses))
	}
	if w.SSE != "" && !slices.Contains(encryptions, types.ServerSideEncryption(w.SSE)) {
		return fmt.Errorf("--sse %q: not a server-side encryption a write can ask for (%s)", w.SSE, joinValues(encryptions))
	}
	if w.SSEKMSKeyID != "" && !strings.HasPrefix(w.SSE, "aws:kms") {
		return fmt.Errorf("--sse-kms-key-id needs --sse aws:kms (or aws:kms:dsse)")
	}
	size := 0
	for k, v := range w.Metadata {
		if err := metadataKey(k); err != nil {
			return err
		}
		if k == ReservedMetadata {
			return fmt.Errorf("--metadata %s: the fleet's own key (an upload's file mtime, which --sync compares)", k)
		}
		for _, r := range v {
			if r < 0x20 || r > 0x7e {
				return fmt.Errorf("--metadata %s: the value must be printable ASCII (S3 sends it as a header)", k)
			}
		}
		size += len(k) + len(v)
	}
	if size > maxUserMetadata {
		return fmt.Errorf("--metadata: %d bytes of keys and values, S3 takes at most %d", size, maxUserMetadata)
	}
	return nil
}

// metadataKey refuses a user metadata key that is not an HTTP header
// token, or that S3 would store under another name (it lowercases them).
func metadataKey(k string) error {
	if k == "" {
		return fmt.Errorf("--metadata: an empty key")
	}
	for _, r := range k {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.!#$%&'*+^`|~", r)
		if !ok {
			return fmt.Errorf("--metadata %q: a key is lowercase letters, digits and -_. (S3 lowercases keys, and sends them as headers)", k)
		}
	}
	return nil
}

func joinValues[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// Encode is w as the transfer record keeps it: "" for the zero Write.
func (w Write) Encode() string {
	if w.IsZero() {
		return ""
	}
	b, _ := json.Marshal(w) // strings and a map of strings: cannot fail
	return string(b)
}

// DecodeWrite reads a Write that Encode made.
func DecodeWrite(s string) (Write, error) {
	var w Write
	if s == "" {
		return w, nil
	}
	if err := json.Unmarshal([]byte(s), &w); err != nil {
		return w, fmt.Errorf("decode the destination's write options: %w", err)
	}
	return w, nil
}

// ParseMetadata reads --metadata values, each KEY=VALUE, into a map.
func ParseMetadata(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--metadata %q: want KEY=VALUE", kv)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--metadata %q: the key %q is given twice", kv, k)
		}
		m[k] = v
	}
	return m, nil
}
