package demo

func coordination(r *run) error { return nil }
