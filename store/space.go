package store

import "errors"

// ErrNoSpace is returned (wrapped) by writes that a backend refused
// because the disk holding its data is nearly full. Nothing was written;
// the write can be retried once space is freed.
var ErrNoSpace = errors.New("no space left on the data dir's disk")
