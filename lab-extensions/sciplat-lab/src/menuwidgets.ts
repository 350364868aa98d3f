/**
 * Lumino menus filled from `MenuEntry` models.
 */
import { CommandRegistry } from '@lumino/commands';
import { Menu } from '@lumino/widgets';

import type { MenuEntry } from './menus';

/** A menu that can refresh itself when it is about to be shown. */
export class DynamicMenu extends Menu {
  onOpen: (() => void) | null = null;
  private _children: Menu[] = [];

  constructor(commands: CommandRegistry, id: string, label: string) {
    super({ commands });
    this.id = id;
    this.title.label = label;
  }

  /** Replace the items with `entries`. */
  setEntries(entries: MenuEntry[]): void {
    this.clearItems();
    for (const child of this._children) {
      child.dispose();
    }
    this._children = [];
    fill(this, entries, this._children);
  }

  protected onBeforeAttach(msg: any): void {
    this.onOpen?.();
    super.onBeforeAttach(msg);
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
