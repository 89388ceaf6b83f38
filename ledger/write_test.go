package ledger_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/s3fleet/s3fleet/ledger"
)

func TestWriteValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		w    ledger.Write
		want string // "" for valid, else a part of the error
	}{
		{ledger.Write{}, ""},
		{ledger.Write{StorageClass: "STANDARD_IA", SSE: "aws:kms", SSEKMSKeyID: "arn:aws:kms:eu-west-1:1:key/x"}, ""},
		{ledger.Write{SSE: "AES256", Metadata: map[string]string{"team": "data lake", "x-y_z.1": ""}}, ""},
		{ledger.Write{StorageClass: "COLD"}, `--storage-class "COLD"`},
		{ledger.Write{StorageClass: "standard_ia"}, "--storage-class"},
		{ledger.Write{SSE: "aes256"}, `--sse "aes256"`},
		{ledger.Write{SSEKMSKeyID: "k"}, "--sse-kms-key-id needs --sse aws:kms"},
		{ledger.Write{SSE: "AES256", SSEKMSKeyID: "k"}, "--sse-kms-key-id needs --sse aws:kms"},
		{ledger.Write{Metadata: map[string]string{"Team": "x"}}, `--metadata "Team"`},
		{ledger.Write{Metadata: map[string]string{"a b": "x"}}, `--metadata "a b"`},
		{ledger.Write{Metadata: map[string]string{"": "x"}}, "empty key"},
		{ledger.Write{Metadata: map[string]string{"k": "line\nbreak"}}, "printable ASCII"},
		{ledger.Write{Metadata: map[string]string{"k": "é"}}, "printable ASCII"},
		{ledger.Write{Metadata: map[string]string{"k": strings.Repeat("v", 2048)}}, "at most 2048"},
	} {
		err := c.w.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.w, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error with %q", c.w, err, c.want)
		}
	}
}

func TestWriteEncode(t *testing.T) {
	t.Parallel()
	if s := (ledger.Write{}).Encode(); s != "" {
		t.Errorf("the zero Write encodes as %q, want empty", s)
	}
	w := ledger.Write{StorageClass: "GLACIER_IR", SSE: "aws:kms", SSEKMSKeyID: "k1", Metadata: map[string]string{"a": "1", "b": "x=y"}}
	got, err := ledger.DecodeWrite(w.Encode())
	if err != nil || !reflect.DeepEqual(got, w) {
		t.Errorf("round trip: %+v, %v; want %+v", got, err, w)
	}
	if _, err := ledger.DecodeWrite("{not json"); err == nil {
		t.Error("a corrupt record decoded without an error")
	}
}

func TestParseMetadata(t *testing.T) {
	t.Parallel()
	m, err := ledger.ParseMetadata([]string{"team=data", "note=a=b", "empty="})
	if err != nil || !reflect.DeepEqual(m, map[string]string{"team": "data", "note": "a=b", "empty": ""}) {
		t.Errorf("ParseMetadata: %v, %v", m, err)
	}
	for _, bad := range [][]string{{"novalue"}, {"k=1", "k=2"}} {
		if _, err := ledger.ParseMetadata(bad); err == nil {
			t.Errorf("ParseMetadata(%q): no error", bad)
		}
	}
}

func TestWriteRefusesWhatAWriteCannotAsk(t *testing.T) {
	t.Parallel()
	for _, w := range []ledger.Write{
		{StorageClass: "OUTPOSTS"}, {StorageClass: "EXPRESS_ONEZONE"}, {SSE: "aws:fsx"},
		{Metadata: map[string]string{ledger.ReservedMetadata: "1"}},
	} {
		if err := w.Validate(); err == nil {
			t.Errorf("%+v: accepted", w)
		}
	}
	if got := (ledger.Write{SSE: "AES256", Metadata: map[string]string{"a": "b"}}).Flags(); got != "--sse, --metadata" {
		t.Errorf("Flags() = %q", got)
	}
}
