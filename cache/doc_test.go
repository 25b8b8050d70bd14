package cache_test

import (
	"fmt"
	"time"

	"github.com/yolkgo/yolk/cache"
)

func Example() {
	var store cache.Store // empty until the first Swap
	fmt.Println("before:", store.Load() == nil)

	fetched := time.Date(2025, 11, 26, 7, 0, 0, 0, time.UTC)
	s, err := cache.NewSnapshot("7", fetched, []byte(`{"greeting": "hello", "list": [1, 2, 3]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	store.Swap(s.WithBy("start", fetched.Add(time.Millisecond)))

	older, _ := cache.NewSnapshot("6", fetched.Add(-time.Minute), []byte(`{}`))
	fmt.Println("older installed:", store.Swap(older.WithBy("pull", time.Now())))

	cur := store.Load()
	fmt.Println(cur.Version, cur.By, len(cur.Items))
	fmt.Println(string(cur.Items["list"]))
	// Output:
	// before: true
	// older installed: false
	// 7 start 2
	// [1,2,3]
}
