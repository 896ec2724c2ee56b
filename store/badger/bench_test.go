package badger

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/peerctl/peerctl/store"
)

// BenchmarkStorePut measures Store.Put on an on-disk tuned backend, from
// one goroutine and from 64:
//
//	go test -run '^$' -bench StorePut -benchtime 3s ./store/badger/
func BenchmarkStorePut(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, par := range []int{1, 64} {
			b.Run(fmt.Sprintf("sync=%v/goroutines=%d", sync, par), func(b *testing.B) {
				be := openTest(b, b.TempDir(), Options{SyncWrites: sync})
				s, err := store.Open(be, store.Config{Node: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				value := make([]byte, 100)
				var n atomic.Int64
				b.SetParallelism(par) // par × GOMAXPROCS goroutines
				b.ReportAllocs()
				b.ResetTimer()
				if par == 1 {
					for i := 0; i < b.N; i++ {
						if _, err := s.Put(fmt.Sprintf("key/%09d", i), value); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Put(fmt.Sprintf("key/%09d", n.Add(1)), value); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
