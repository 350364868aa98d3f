/**
 * Lumino menus filled from `MenuEntry` models.
 */
import { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Menu } from '@lumino/widgets';

import type { MenuEntry } from './menus';

/**
 * A menu whose items are replaced from models. Lumino closes a menu whose items change, so a
 * replacement that arrives while the menu is open waits until it closes.
 */
export class DynamicMenu extends Menu {
  /** Called when the menu is about to be shown (it may start a refresh for next time). */
  onOpen: (() => void) | null = null;
  private _children: Menu[] = [];
  private _pending: MenuEntry[] | null = null;

  constructor(commands: CommandRegistry, id: string, label: string) {
    super({ commands });
    this.id = id;
    this.title.label = label;
  }

  /** Replace the items with `entries` (now, or when the menu closes). */
  setEntries(entries: MenuEntry[]): void {
    if (this.isAttached) {
      this._pending = entries;
      return;
    }
    this._pending = null;
    this.clearItems();
    for (const child of this._children) {
      child.dispose();
    }
    this._children = [];
    fill(this, entries, this._children);
  }

  protected onBeforeAttach(msg: Message): void {
    this.onOpen?.();
    super.onBeforeAttach(msg);
  }

  protected onAfterDetach(msg: Message): void {
    super.onAfterDetach(msg);
    if (this._pending) {
      const pending = this._pending;
      // After Lumino has finished closing (it may still touch the items in this turn).
      requestAnimationFrame(() => {
        if (this._pending === pending) {
          this.setEntries(pending);
        }
      });
    }
  }
}

function fill(menu: Menu, entries: MenuEntry[], children: Menu[]): void {
  for (const entry of entries) {
    if (entry.kind === 'separator') {
      menu.addItem({ type: 'separator' });
    } else if (entry.kind === 'command') {
      menu.addItem({ command: entry.command, args: entry.args });
    } else {
      const sub = new Menu({ commands: menu.commands });
      sub.id = entry.id;
      sub.title.label = entry.label;
      fill(sub, entry.items, children);
      children.push(sub);
      menu.addItem({ type: 'submenu', submenu: sub });
    }
  }
}
