package badger

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/store"
)

// BenchmarkVerifyCost reopens one store (10,000 small entries in tables,
// 1,000 2-KiB values in the value log) with checksum verification on and
// off in alternation, 15 rounds, and reports the median time of
// reopening+loading it and of 2,000 value-log reads in each mode. On a
// shared, loaded machine alternating keeps the comparison fair:
//
//	go test -run '^$' -bench VerifyCost -benchtime 1x -v ./store/badger/
func BenchmarkVerifyCost(b *testing.B) {
	for i := 0; i < b.N; i++ {
		verifyCost(b)
	}
}

func verifyCost(t *testing.B) {
	dir := t.TempDir()
	be := openTest(t, dir, Options{})
	var batch []store.Entry
	for i := 0; i < 11000; i++ {
		e := damageEntry(i % damageSmall)
		if i >= 10000 {
			e = damageEntry(damageSmall + i%damageBig)
		}
		e.Key = fmt.Sprintf("%s/%d", e.Key, i)
		batch = append(batch, e)
		if len(batch) == 100 {
			if err := be.Put(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	be.Close()
	times := map[string][]time.Duration{}
	defer func() { noVerify = false }()
	for round := 0; round < 15; round++ {
		for _, verify := range []bool{round%2 == 0, round%2 != 0} {
			noVerify = !verify
			start := time.Now()
			be := openTest(t, dir, Options{})
			n := 0
			if err := be.Load(func(store.Entry) error { n++; return nil }); err != nil || n != 11000 {
				t.Fatalf("Load: %d, %v", n, err)
			}
			times[fmt.Sprintf("open+load verify=%v", verify)] = append(times[fmt.Sprintf("open+load verify=%v", verify)], time.Since(start))
			start = time.Now()
			for i := 0; i < 2000; i++ {
				j := 10000 + i%1000
				if _, err := be.Get(fmt.Sprintf("big/%05d/%d", damageSmall+j%damageBig, j)); err != nil {
					t.Fatal(err)
				}
			}
			times[fmt.Sprintf("2000 gets verify=%v", verify)] = append(times[fmt.Sprintf("2000 gets verify=%v", verify)], time.Since(start))
			be.Close()
		}
	}
	for k, ds := range times {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		t.Logf("%-28s median %v (min %v, max %v)", k, ds[len(ds)/2], ds[0], ds[len(ds)-1])
		t.ReportMetric(float64(ds[len(ds)/2].Microseconds()), strings.ReplaceAll(k, " ", "_")+"_µs")
	}
}
