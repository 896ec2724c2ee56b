package badger_test

import (
	"errors"
	"fmt"
	"os"

	"github.com/peerctl/peerctl/store"
	"github.com/peerctl/peerctl/store/badger"
)

func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "peerctl-example")
	defer os.RemoveAll(dir)

	be, err := badger.Open(dir, badger.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	s, err := store.Open(be, store.Config{Node: "node1"})
	if err != nil {
		be.Close()
		fmt.Println(err)
		return
	}
	defer s.Close() // closes the backend too

	s.Put("greeting", []byte("hello"))
	e, _ := s.Get("greeting")
	fmt.Printf("%s = %s\n", e.Key, e.Value)

	// A second agent on the same data dir is refused.
	_, err = badger.Open(dir, badger.Options{})
	fmt.Println(errors.Is(err, badger.ErrLocked))

	// The daemon calls RunGC on a ticker; nil means nothing to collect.
	fmt.Println(be.RunGC())
	// Output:
	// greeting = hello
	// true
	// <nil>
}
