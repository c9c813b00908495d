(function(){
  'use strict';
  // Charts: figure JSON lives in <script type="application/json"> next to each chart div.
  document.querySelectorAll('div.chart[data-fig]').forEach(function(div){
    var spec = JSON.parse(document.getElementById(div.dataset.fig).textContent);
    Plotly.newPlot(div, spec.data, spec.layout, {displaylogo:false, responsive:true,
      modeBarButtonsToRemove:['select2d','lasso2d','autoScale2d']});
  });

  // Sortable tables: click a header; numbers sort by data-v when present.
  function cellValue(row, i, type){
    var c = row.cells[i]; if(!c) return '';
    var v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
    if(type === 'num' || type === 'lang'){ var f = parseFloat(v); return isNaN(f) ? -Infinity : f; }
    return v.toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths, function(th, i){
      if(th.classList.contains('nosort')) return;
      th.addEventListener('click', function(){
        var asc = !th.classList.contains('asc');
        Array.prototype.forEach.call(ths, function(h){ h.classList.remove('asc','desc'); });
        th.classList.add(asc ? 'asc' : 'desc');
        var type = th.dataset.type || 'text', body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function(a, b){
          var x = cellValue(a, i, type), y = cellValue(b, i, type);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function(r){ body.appendChild(r); });
      });
    });
  });

  // Leaderboard filters.
  var lb = document.getElementById('lb');
  if(lb){
    var q = document.getElementById('lb-filter'), prim = document.getElementById('lb-primary');
    var count = document.getElementById('lb-count');
    var apply = function(){
      var words = q.value.toLowerCase().split(/\s+/).filter(Boolean), n = 0, total = 0;
      Array.prototype.forEach.call(lb.tBodies[0].rows, function(r){
        total++;
        var text = r.textContent.toLowerCase();
        var ok = (!prim.checked || r.dataset.primary === '1') && words.every(function(w){ return text.indexOf(w) >= 0; });
        r.style.display = ok ? '' : 'none'; if(ok) n++;
      });
      count.textContent = n + ' of ' + total + ' rows';
    };
    q.addEventListener('input', apply); prim.addEventListener('change', apply); apply();
  }

  // Item browsers: filter by language and by wrong answers.
  document.querySelectorAll('section.browser').forEach(function(sec){
    var lang = sec.querySelector('.f-lang'), wrong = sec.querySelector('.f-wrong');
    var count = sec.querySelector('.count'), rows = sec.querySelectorAll('.items tbody tr');
    var apply = function(){
      var n = 0;
      rows.forEach(function(r){
        var w = r.dataset.wrong ? r.dataset.wrong.split(' ') : [];
        var ok = (!lang.value || r.dataset.lang === lang.value) &&
                 (!wrong.value || (wrong.value === 'any' ? w.length > 0 : w.indexOf(wrong.value) >= 0));
        r.style.display = ok ? '' : 'none'; if(ok) n++;
      });
      count.textContent = n + ' of ' + rows.length + ' items shown';
    };
    lang.addEventListener('change', apply); wrong.addEventListener('change', apply); apply();
  });
})();
