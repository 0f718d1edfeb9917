/**
 * The one icon of encrypted notebooks (file browser, tabs, launcher, menus, status bar).
 */
import { LabIcon } from '@jupyterlab/ui-components';

export const LOCK_NOTEBOOK_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon-warn0 jp-icon-selectable" fill="#EF6C00">
    <path d="M4 2h11l5 5v15H4z" opacity="0.25"/>
    <path d="M15 2v5h5" fill="none" stroke="#EF6C00" stroke-width="1.2"/>
    <rect x="7.5" y="12" width="9" height="7" rx="1"/>
    <path d="M9.5 12V10a2.5 2.5 0 0 1 5 0v2" fill="none" stroke="#EF6C00" stroke-width="1.6"/>
  </g>
</svg>`;

export const encryptedNotebookIcon = new LabIcon({
  name: 'secsync-jupyter:encrypted-notebook',
  svgstr: LOCK_NOTEBOOK_SVG
});
