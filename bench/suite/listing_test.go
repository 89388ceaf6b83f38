package main

import (
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestListingServerPages walks the generated listing as ListObjectsV2 would
// and finds every key once, in order.
func TestListingServerPages(t *testing.T) {
	srv := httptest.NewServer(listingServer{n: 2345})
	defer srv.Close()
	token, seen, pages, prev := "", 0, 0, ""
	for {
		url := srv.URL + "/" + listingBucket + "?list-type=2&prefix=" + listingPrefix
		if token != "" {
			url += "&continuation-token=" + token
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		var p listPage
		err = xml.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("page %d: status %d, %v", pages, resp.StatusCode, err)
		}
		pages++
		for _, c := range p.Contents {
			if want := listingKey(seen); c.Key != want || c.Size < listingSize || c.Size >= listingSize+256 || (seen > 0 && c.Key <= prev) {
				t.Fatalf("key %d: %q (%d bytes), want %q", seen, c.Key, c.Size, want)
			}
			prev = c.Key
			seen++
		}
		if p.KeyCount != len(p.Contents) {
			t.Fatalf("KeyCount %d with %d keys", p.KeyCount, len(p.Contents))
		}
		if !p.IsTruncated {
			break
		}
		token = p.NextToken
	}
	if seen != 2345 || pages != 3 {
		t.Fatalf("%d keys in %d pages, want 2345 in 3", seen, pages)
	}
	if resp, err := http.Get(srv.URL + "/other?list-type=2"); err != nil || resp.StatusCode != http.StatusNotImplemented {
		t.Fatalf("another bucket: %v %v", resp, err)
	}
}
