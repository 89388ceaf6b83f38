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

// maxUserMetadata is S3's bound on an object's user metadata: the keys
// and values of its x-amz-meta-* headers together.
const maxUserMetadata = 2 << 10

// Validate refuses what S3 would refuse, naming the option: an unknown
// storage class or encryption, a KMS key without aws:kms, and metadata
// keys or values that cannot be HTTP headers.
func (w Write) Validate() error {
	if w.StorageClass != "" && !slices.Contains(types.StorageClass("").Values(), types.StorageClass(w.StorageClass)) {
		return fmt.Errorf("--storage-class %q: not a storage class S3 knows (%s)", w.StorageClass, joinValues(types.StorageClass("").Values()))
	}
	if w.SSE != "" && !slices.Contains(types.ServerSideEncryption("").Values(), types.ServerSideEncryption(w.SSE)) {
		return fmt.Errorf("--sse %q: not a server-side encryption S3 knows (%s)", w.SSE, joinValues(types.ServerSideEncryption("").Values()))
	}
	if w.SSEKMSKeyID != "" && !strings.HasPrefix(w.SSE, "aws:kms") {
		return fmt.Errorf("--sse-kms-key-id needs --sse aws:kms (or aws:kms:dsse)")
	}
	size := 0
	for k, v := range w.Metadata {
		if err := metadataKey(k); err != nil {
			return err
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
