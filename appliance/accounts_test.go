package appliance

import "testing"

func TestPasswordHash(t *testing.T) {
	phc, err := hashPassword(randReader{}, "hunter2hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if !checkPassword(phc, "hunter2hunter2") || checkPassword(phc, "hunter2hunter3") {
		t.Error("password check wrong")
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", phc + "$x"} {
		if checkPassword(bad, "hunter2hunter2") {
			t.Errorf("corrupt hash %q accepted", bad)
		}
	}
	if !checkPassword(dummyHash(), "securechat-dummy-password") {
		t.Error("dummy hash is not a valid hash")
	}
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}
