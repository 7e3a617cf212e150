package home

// The account's own signed device list (docs/protocol.md §9.8, §10: meta
// "devicelist"), as this device last made, received or verified it: the
// base of the next list when this device links or revokes a device.

var keyDeviceList = []byte("devicelist")

// OwnDeviceList returns the account's signed device list as this home
// keeps it, nil if it keeps none (a home from before device lists, or a
// device added with login).
func (t *Tx) OwnDeviceList() ([]byte, error) {
	return t.get(bucketMeta, keyDeviceList)
}

// PutOwnDeviceList keeps the account's signed device list.
func (t *Tx) PutOwnDeviceList(list []byte) error {
	return t.put(bucketMeta, keyDeviceList, list)
}

// OwnDeviceList: see Tx.OwnDeviceList.
func (h *Home) OwnDeviceList() ([]byte, error) {
	var b []byte
	err := h.View(func(tx *Tx) error {
		var err error
		b, err = tx.OwnDeviceList()
		return err
	})
	return b, err
}

// SaveOwnDeviceList: see Tx.PutOwnDeviceList.
func (h *Home) SaveOwnDeviceList(list []byte) error {
	return h.Update(func(tx *Tx) error { return tx.PutOwnDeviceList(list) })
}

// The history a device linking this one sent (docs/protocol.md §10.1:
// meta "pendinghistory"): the sealed link message's reference to it —
// the file's id, key, digest and size — kept until it is fetched and
// added, so that a fetch cut short is tried again at the next connection
// rather than lost with the key.
var keyPendingHistory = []byte("pendinghistory")

// PutPendingHistory keeps the reference to the history still to fetch.
func (t *Tx) PutPendingHistory(ref []byte) error {
	return t.put(bucketMeta, keyPendingHistory, ref)
}

// PendingHistory returns the reference to the history still to fetch,
// nil if none.
func (h *Home) PendingHistory() ([]byte, error) {
	var b []byte
	err := h.View(func(tx *Tx) (err error) {
		b, err = tx.get(bucketMeta, keyPendingHistory)
		return err
	})
	return b, err
}

// ClearPendingHistory forgets the reference: the history was added, or
// cannot be.
func (h *Home) ClearPendingHistory() error {
	return h.Update(func(tx *Tx) error { return tx.tx.Bucket(bucketMeta).Delete(keyPendingHistory) })
}
