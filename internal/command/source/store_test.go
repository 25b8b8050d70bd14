package source

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
)

// TestStoreConcurrentWrites checks that concurrent writes get distinct versions
// and that the change callback sees them in order.
func TestStoreConcurrentWrites(t *testing.T) {
	var seen []string // written under the store's lock
	st, err := newStore(initialData(10), func(c change) { seen = append(seen, c.Version) })
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := "w" + strconv.Itoa(w)
				if _, err := st.Put(key, []byte(strconv.Itoa(i)), "test"); err != nil {
					t.Errorf("Put(%q) = %v", key, err)
				}
				_ = st.Snapshot().body // readers never wait
			}
		})
	}
	wg.Wait()
	if len(seen) != writers*each {
		t.Fatalf("%d change callbacks, want %d", len(seen), writers*each)
	}
	for i, v := range seen {
		if want := strconv.Itoa(i + 2); v != want {
			t.Fatalf("change %d: version %q, want %q", i, v, want)
		}
	}
	snap := st.Snapshot()
	var data map[string]json.RawMessage
	if err := json.Unmarshal(snap.body, &data); err != nil {
		t.Fatal(err)
	}
	if got, want := snap.version, strconv.Itoa(writers*each+1); got != want {
		t.Errorf("final version %q, want %q", got, want)
	}
	for w := range writers {
		if got := string(data["w"+strconv.Itoa(w)]); got != strconv.Itoa(each-1) {
			t.Errorf("w%d = %s, want %d", w, got, each-1)
		}
	}
}

func TestStoreBodyEncodedOncePerVersion(t *testing.T) {
	st, err := newStore(initialData(2), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := st.Snapshot(), st.Snapshot()
	if &a.body[0] != &b.body[0] {
		t.Error("two reads of one version returned different encodings")
	}
	if got, want := string(a.body), `{"k0":{"name":"item 0","n":0},"k1":{"name":"item 1","n":1}}`; got != want {
		t.Errorf("initial body %s, want %s", got, want)
	}
}

func TestWriteHugeIsValidJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	writeHuge(t.Context(), rec, 3<<20)
	if !json.Valid(rec.Body.Bytes()) || rec.Body.Len() < 3<<20 {
		t.Errorf("writeHuge(3 MiB): %d bytes, valid JSON %v; want at least 3 MiB of valid JSON", rec.Body.Len(), json.Valid(rec.Body.Bytes()))
	}
}
