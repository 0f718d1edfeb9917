/**
 * The commands and toolbar buttons of members and roles (issue 11): "My identity" and
 * "Members of Encrypted Notebook", plus the read-only guard for viewers (readonly.ts).
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { CommandToolbarButton, Dialog } from '@jupyterlab/apputils';
import type { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import type { TranslationBundle } from '@jupyterlab/translation';
import { linkIcon, usersIcon } from '@jupyterlab/ui-components';

import { showMembers } from './members';
import { showShare } from './sharedialog';
import { showMyIdentity } from './myidentity';
import { installReadOnlyGuard, showReadOnlyState } from './readonly';
import { IEncryptedSession, registry } from './registry';
import type { IStatusActions } from './status';

export namespace MemberCommandIDs {
  export const myIdentity = 'secsync:my-identity';
  export const members = 'secsync:members';
  export const share = 'secsync:share';
}

/**
 * Registers the commands; returns what the status bar's collaborators popup offers.
 * `currentSession` is the encrypted session of the current notebook.
 */
export function addMemberCommands(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  trans: TranslationBundle,
  currentSession: () => IEncryptedSession | undefined
): IStatusActions {
  const user = app.serviceManager.user;
  installReadOnlyGuard(app, tracker, trans);

  app.commands.addCommand(MemberCommandIDs.myIdentity, {
    label: args => (args.toolbar ? '' : trans.__('My Identity (for Encrypted Notebooks)…')),
    caption: trans.__(
      'Copy this browser’s identity string: send it to the owner of an encrypted notebook to be added as a member'
    ),
    execute: () => showMyIdentity(user, trans)
  });

  const sessionFor = (args: Record<string, unknown>) => {
    if (typeof args.panelId === 'string') {
      const panel = tracker.find(p => p.id === args.panelId);
      return registry.forModel(panel?.context.model.sharedModel as any);
    }
    if (typeof args.path === 'string') {
      return registry.all().find(s => s.path === args.path);
    }
    return currentSession();
  };
  app.commands.addCommand(MemberCommandIDs.members, {
    label: args => (args.toolbar ? trans.__('Members') : trans.__('Members of Encrypted Notebook…')),
    caption: trans.__('Who may read and edit this encrypted notebook; owners and admins change it'),
    icon: args => (args.toolbar ? usersIcon : undefined),
    // (the toolbar button of a panel is always enabled: its session may still be loading)
    isEnabled: args => !!args.toolbar || !!sessionFor(args)?.status.loaded,
    execute: args => {
      const session = sessionFor(args);
      if (!session) {
        throw new Error(trans.__('The current document is not an encrypted notebook.'));
      }
      if (!session.status.loaded) {
        throw new Error(trans.__('%1 is still loading.', session.path));
      }
      return showMembers(session, trans, user);
    }
  });

  // issue 12: invitation links (sharedialog.ts)
  app.commands.addCommand(MemberCommandIDs.share, {
    label: args => (args.toolbar ? trans.__('Share') : trans.__('Share Encrypted Notebook (Invitation Links)…')),
    caption: trans.__(
      'Invitation links: create a viewer or editor link, see who joined through each, revoke'
    ),
    icon: args => (args.toolbar ? linkIcon : undefined),
    isEnabled: args => !!args.toolbar || !!sessionFor(args)?.status.loaded,
    execute: args => {
      const session = sessionFor(args);
      if (!session) {
        throw new Error(trans.__('The current document is not an encrypted notebook.'));
      }
      if (!session.status.loaded) {
        throw new Error(trans.__('%1 is still loading.', session.path));
      }
      if (!session.membership && !session.docId.startsWith('m1_')) {
        // no membership log: sharing is its #key= link, as Copy Share Link (index.ts)
        return app.commands.execute('secsync:copy-share-link', { path: session.path });
      }
      return showShare(session, trans);
    }
  });

  return {
    myIdentity: () => {
      Dialog.tracker.currentWidget?.reject();
      void app.commands.execute(MemberCommandIDs.myIdentity);
    },
    members: session => {
      Dialog.tracker.currentWidget?.reject();
      void app.commands.execute(MemberCommandIDs.members, { path: session.path });
    },
    share: session => {
      Dialog.tracker.currentWidget?.reject();
      void app.commands.execute(MemberCommandIDs.share, { path: session.path });
    }
  };
}

/** The Members button in an encrypted notebook's toolbar, and its read-only state. */
export function decorateEncryptedPanel(
  app: JupyterFrontEnd,
  panel: NotebookPanel,
  trans: TranslationBundle
): void {
  // (first: the toolbar moves what does not fit into its "…" menu, from the right)
  panel.toolbar.insertItem(
    0,
    'secsyncMembers',
    new CommandToolbarButton({
      commands: app.commands,
      id: MemberCommandIDs.members,
      args: { toolbar: true, panelId: panel.id },
      label: trans.__('Members')
    })
  );
  panel.toolbar.insertItem(
    1,
    'secsyncShare',
    new CommandToolbarButton({
      commands: app.commands,
      id: MemberCommandIDs.share,
      args: { toolbar: true, panelId: panel.id },
      label: trans.__('Share')
    })
  );
  showReadOnlyState(panel, trans);
}
