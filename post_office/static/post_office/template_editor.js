/* post_office: a small code editor for template sources (line numbers, Tab indents, {{ }} and {% %} marked).
 *
 * It enhances every <textarea class="po-code-editor">; without JavaScript the textarea
 * works as it is. The textarea stays the real field: the editor only draws line
 * numbers beside it and a highlighted copy of its text behind it.
 */
'use strict';
(function() {
    const INDENT = '    ';
    const TOKENS = /(\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}|\{#[\s\S]*?#\}|\{[{%#])/g;

    function escapeHtml(text) {
        return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
    }

    function highlight(text) {
        let html = '';
        let last = 0;
        text.replace(TOKENS, function(match, _token, offset) {
            html += escapeHtml(text.slice(last, offset));
            let kind = 'po-unclosed';
            if (match.length > 2) {
                kind = match.startsWith('{{') ? 'po-var' : match.startsWith('{%') ? 'po-tag' : 'po-comment';
            }
            html += '<span class="' + kind + '">' + escapeHtml(match) + '</span>';
            last = offset + match.length;
            return match;
        });
        // A trailing newline needs a character after it, or the copy is one line short.
        return html + escapeHtml(text.slice(last)) + '\n';
    }

    function gutter(lines, errorLine) {
        let html = '';
        for (let number = 1; number <= lines; number++) {
            const mark = number === errorLine ? ' class="po-error-line"' : '';
            html += '<span' + mark + '>' + number + '</span>\n';
        }
        return html;
    }

    function indentSelection(textarea, outdent) {
        const value = textarea.value;
        const start = textarea.selectionStart;
        const end = textarea.selectionEnd;
        const lineStart = value.lastIndexOf('\n', start - 1) + 1;
        if (!outdent && start === end) {
            textarea.setRangeText(INDENT, start, end, 'end');
            return;
        }
        const block = value.slice(lineStart, end);
        const lines = block.split('\n');
        const changed = lines.map(function(line) {
            if (!outdent) {
                return INDENT + line;
            }
            const spaces = line.match(/^ {1,4}|^\t/);
            return spaces ? line.slice(spaces[0].length) : line;
        }).join('\n');
        textarea.setRangeText(changed, lineStart, end, 'select');
        if (start === end) {
            textarea.setSelectionRange(Math.max(lineStart, start - (block.length - changed.length)), Math.max(lineStart, start - (block.length - changed.length)));
        }
    }

    function enhance(textarea) {
        if (textarea.dataset.poEditor || textarea.closest('.empty-form')) {
            return;
        }
        textarea.dataset.poEditor = '1';
        textarea.setAttribute('wrap', 'off');
        const editor = document.createElement('div');
        editor.className = 'po-editor';
        const numbers = document.createElement('pre');
        numbers.className = 'po-editor-gutter';
        numbers.setAttribute('aria-hidden', 'true');
        const area = document.createElement('div');
        area.className = 'po-editor-area';
        const copy = document.createElement('pre');
        copy.className = 'po-editor-highlight';
        copy.setAttribute('aria-hidden', 'true');
        textarea.parentNode.insertBefore(editor, textarea);
        editor.appendChild(numbers);
        editor.appendChild(area);
        area.appendChild(copy);
        area.appendChild(textarea);
        const errorLine = parseInt(textarea.dataset.errorLine || '0', 10);
        let escaped = false;

        function sync() {
            copy.scrollTop = textarea.scrollTop;
            copy.scrollLeft = textarea.scrollLeft;
            numbers.scrollTop = textarea.scrollTop;
        }
        function refresh() {
            copy.innerHTML = highlight(textarea.value);
            numbers.innerHTML = gutter(textarea.value.split('\n').length, errorLine);
            sync();
        }
        textarea.addEventListener('input', refresh);
        textarea.addEventListener('scroll', sync);
        textarea.addEventListener('keydown', function(event) {
            if (event.key === 'Escape') {
                escaped = true;  // Escape, then Tab: leave the field as usual.
                return;
            }
            if (event.key === 'Tab' && !escaped && !event.ctrlKey && !event.altKey && !event.metaKey) {
                event.preventDefault();
                indentSelection(textarea, event.shiftKey);
                refresh();
            } else if (event.key === 'Enter' && !event.shiftKey) {
                const value = textarea.value;
                const lineStart = value.lastIndexOf('\n', textarea.selectionStart - 1) + 1;
                const indent = value.slice(lineStart).match(/^[ \t]*/)[0];
                if (indent) {
                    event.preventDefault();
                    textarea.setRangeText('\n' + indent, textarea.selectionStart, textarea.selectionEnd, 'end');
                    refresh();
                }
            }
            escaped = false;
        });
        if ('ResizeObserver' in window) {
            new ResizeObserver(sync).observe(textarea);
        }
        refresh();
        if (errorLine) {
            const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 19;
            textarea.scrollTop = Math.max(0, (errorLine - 3) * lineHeight);
            sync();
        }
    }

    function enhanceAll(root) {
        root.querySelectorAll('textarea.po-code-editor').forEach(enhance);
    }

    document.addEventListener('DOMContentLoaded', function() {
        enhanceAll(document);
    });
    // A translation added with "Add another" (Django's inlines.js).
    document.addEventListener('formset:added', function(event) {
        enhanceAll(event.target);
    });
})();
