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
