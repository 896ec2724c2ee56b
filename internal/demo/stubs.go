package demo

func consistency(r *run) error  { return nil }
func coordination(r *run) error { return nil }
