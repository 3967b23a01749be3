/* post_office: the template preview on the change page, fetched without leaving the page.
 *
 * The "Preview" button posts the whole change form (with its CSRF token) to the preview
 * view, which renders the text being edited; the answer is a piece of HTML put into
 * #po-preview-result. Without JavaScript the same button opens the preview page.
 */
'use strict';
(function() {
    // Called as gettext('...') so that makemessages -d djangojs finds the strings.
    const gettext = window.gettext || function(text) { return text; };

    function showError(result, message) {
        result.textContent = '';
        const note = document.createElement('p');
        note.className = 'errornote';
        note.id = 'po-preview-error';
        note.textContent = message;
        result.appendChild(note);
    }

    document.addEventListener('click', function(event) {
        const button = event.target.closest('#po-preview-button[data-preview-url]');
        const result = document.getElementById('po-preview-result');
        if (!button || !result || !button.form || !window.fetch) {
            return;
        }
        event.preventDefault();
        const data = new FormData(button.form);
        data.append('_po_fragment', '1');
        const token = button.form.querySelector('input[name="csrfmiddlewaretoken"]');
        result.classList.add('po-preview-loading');
        button.disabled = true;
        fetch(button.dataset.previewUrl, {
            method: 'POST',
            body: data,
            credentials: 'same-origin',
            headers: token ? {'X-CSRFToken': token.value} : {},
        }).then(function(response) {
            if (!response.ok) {
                throw new Error(interpolate(gettext('The preview failed (HTTP %s).'), [response.status]));
            }
            return response.text();
        }).then(function(html) {
            // Server-rendered and escaped; the email's HTML is only inside the sandboxed iframe's srcdoc.
            result.innerHTML = html;
        }).catch(function(error) {
            showError(result, error.message || gettext('The preview failed.'));
        }).finally(function() {
            result.classList.remove('po-preview-loading');
            button.disabled = false;
        });
    });

    function interpolate(text, values) {
        return window.interpolate ? window.interpolate(text, values) : text.replace('%s', values[0]);
    }
})();
