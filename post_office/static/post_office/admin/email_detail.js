/* Tabs for an email's detail page. Without this script every panel shows as a section. */
(function () {
    'use strict';

    function setUp(root) {
        var tabs = Array.prototype.slice.call(root.querySelectorAll('[role="tab"]'));
        var panels = tabs.map(function (tab) { return document.getElementById(tab.getAttribute('aria-controls')); });
        if (!tabs.length) { return; }

        function select(index, focus) {
            tabs.forEach(function (tab, i) {
                var selected = i === index;
                tab.setAttribute('aria-selected', selected ? 'true' : 'false');
                tab.setAttribute('tabindex', selected ? '0' : '-1');
                if (panels[i]) { panels[i].hidden = !selected; }
            });
            if (focus) { tabs[index].focus(); }
        }

        tabs.forEach(function (tab, index) {
            tab.addEventListener('click', function (event) {
                event.preventDefault();
                select(index, false);
                if (window.history && window.history.replaceState) {
                    window.history.replaceState(null, '', '#' + tab.getAttribute('aria-controls'));
                }
            });
            tab.addEventListener('keydown', function (event) {
                var next = null;
                if (event.key === 'ArrowRight') { next = (index + 1) % tabs.length; }
                if (event.key === 'ArrowLeft') { next = (index - 1 + tabs.length) % tabs.length; }
                if (event.key === 'Home') { next = 0; }
                if (event.key === 'End') { next = tabs.length - 1; }
                if (next !== null) { event.preventDefault(); select(next, true); }
            });
        });

        var wanted = window.location.hash.slice(1) || root.getAttribute('data-po-initial') || '';
        var initial = tabs.findIndex(function (tab) { return tab.getAttribute('aria-controls') === wanted; });
        root.classList.add('po-tabs-ready');
        select(initial >= 0 ? initial : 0, false);
    }

    function start() {
        Array.prototype.forEach.call(document.querySelectorAll('[data-po-tabs]'), setUp);
    }

    if (document.readyState === 'loading') {
        document.addEventListener('DOMContentLoaded', start);
    } else {
        start();
    }
}());
