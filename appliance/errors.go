package appliance

import "errors"

// ErrDataInUse is returned when another process holds the data directory's store.
var ErrDataInUse = errors.New("data directory is in use by another securechat server")
