set -x
cd /opt/xenvmi/src
python -m xenvmi xs watch /test-lu --timeout 60 --json > /tmp/w.out 2> /tmp/w.err &
W=$!
python -m xenvmi top -b --json -d 1 > /tmp/t.out 2> /tmp/t.err &
T=$!
sleep 15
xenstore-write /test-lu/a 1
sleep 2
date +%s.%N
xenstore-control live-update /usr/lib/xen-4.17/bin/oxenstored
date +%s.%N
sleep 3
xenstore-write /test-lu/b 2
sleep 5
python -m xenvmi list; echo list=$?
kill $T; wait $W; echo watch=$?
xenstore-rm /test-lu
cat /tmp/w.out; cat /tmp/w.err; wc -l /tmp/t.out; cat /tmp/t.err
python -c "
import json
for l in open('/tmp/t.out'):
    try: d=json.loads(l)
    except Exception: continue
    print(d.get('time', d.get('at')), len(d['domains']))
" | tail -12
