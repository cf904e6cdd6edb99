// The console's only script: buttons POST to the control API, and the live part of the
// page is fetched again every two seconds. Every text it shows goes through textContent.
(function () {
  const flash = (text, ok) => {
    const f = document.getElementById('flash');
    f.textContent = text;
    f.className = ok ? 'ok' : 'err';
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => { f.className = ''; }, 6000);
  };
  const say = (label, r, j) => {
    if (!r.ok) return `${label}: ${r.status} ${j.message || j.code || ''}`;
    if (j.notified === true && (j.status === 200 || j.status === 204)) return `${label}: the merchant answered ${j.status}`;
    if (j.notified === true) return `${label}: the merchant answered ${j.status}, which is not 200 or 204; WeChat Pay will retry`;
    if (j.notified === false && j.error) return `${label}: done, but the notification failed (${j.error}); it will be retried`;
    if (j.number) return `${label}: attempt ${j.number} ${j.status ? 'answered ' + j.status : 'failed: ' + (j.error || '')}`;
    if (j.code && j.openid) return `login code for ${j.openid}: ${j.code}`;
    return `${label}: done`;
  };
  let last = '';
  async function refresh() {
    const live = document.getElementById('live');
    if (!live) return;
    try {
      const r = await fetch('/console/live', { cache: 'no-store' });
      if (!r.ok) return;
      const html = await r.text();
      if (html !== last) { live.innerHTML = html; last = html; }
    } catch (e) { /* the simulator stopped; try again later */ }
  }
  async function post(url) {
    const r = await fetch(url, { method: 'POST' });
    let j = {};
    try { j = await r.json(); } catch (e) { /* not JSON */ }
    return [r, j];
  }
  document.addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-post]');
    if (!b) return;
    e.preventDefault();
    b.disabled = true;
    try {
      const [r, j] = await post(b.dataset.post);
      const acknowledged = j.notified !== true || j.status === 200 || j.status === 204;
      const retried = j.number === undefined || j.acknowledged !== false;
      flash(say(b.dataset.label || b.textContent, r, j), r.ok && acknowledged && retried);
      if (b.dataset.show && r.ok) document.getElementById(b.dataset.show).textContent = j.code || '';
    } catch (err) {
      flash(String(err), false);
    }
    await refresh();
    b.disabled = false;
  });
  // Forms whose inputs become part of a control API URL.
  document.addEventListener('submit', async (e) => {
    const f = e.target.closest('form[data-action]');
    if (!f) return;
    e.preventDefault();
    const v = (name) => encodeURIComponent((f.elements[name] && f.elements[name].value || '').trim());
    const which = e.submitter && e.submitter.value;
    if (f.dataset.action === 'login') {
      const [r, j] = await post(`/sim/login-codes?openid=${v('openid')}`);
      flash(say('login code', r, j), r.ok);
      if (r.ok) document.getElementById('login-code').textContent = j.code;
    } else if (f.dataset.action === 'bill') {
      const day = v('date');
      if (which === 'view') {
        const r = await fetch(`/sim/bill/${day}`, { cache: 'no-store' });
        const j = await r.json().catch(() => ({}));
        document.getElementById('bill-file').textContent = j.file || j.message || `${r.status}`;
      } else if (which === 'download') {
        window.location.href = `/sim/bill/${day}/file`;
      } else if (which === 'drop') {
        const [r, j] = await post(`/sim/bill/drop/${v('number')}`);
        flash(say(`drop ${f.elements.number.value} from the bill`, r, j), r.ok);
      } else if (which === 'amount') {
        const [r, j] = await post(`/sim/bill/amount/${v('number')}?fen=${v('fen')}`);
        flash(say(`bill amount of ${f.elements.number.value}`, r, j), r.ok);
      }
    }
  });
  setInterval(refresh, 2000);
})();
